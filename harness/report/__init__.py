"""Reporting: the leaderboard (aggregation + text/Markdown/CSV/HTML renderers) and plots.

``build_leaderboard(rows)`` -> ``render(board, fmt)``; ``write_leaderboard(cfg)`` writes
``<storage>/<name>/leaderboard.{md,csv,html}``; ``make_plots(cfg)`` writes PNGs under
``<storage>/<name>/plots/`` (matplotlib is imported only there).
"""
from harness.report.leaderboard import FORMATS, build_leaderboard, policy_note, render, write_leaderboard
from harness.report.plots import make_plots

__all__ = ["FORMATS", "build_leaderboard", "make_plots", "policy_note", "render", "write_leaderboard"]
