"""Reporting: the leaderboard with paired statistics, the paper's claims, selector evaluation,
plots and the self-contained HTML report.

``build_leaderboard(rows)`` -> ``render(board, fmt)``; ``write_report(cfg)`` writes
``<storage>/<name>/leaderboard.{md,csv,html}``, ``claims.{md,csv}``, ``selectors.{md,csv}`` and
the plots (``make_plots(cfg)``, matplotlib imported only there).
"""

from harness.report.claims import check_claims, render_claims
from harness.report.leaderboard import FORMATS, build_leaderboard, policy_note, render, write_leaderboard
from harness.report.plots import make_plots
from harness.report.report import Report, build_report, write_report
from harness.report.selectors import evaluate_selectors, render_selectors

__all__ = [
    "FORMATS",
    "Report",
    "build_leaderboard",
    "build_report",
    "check_claims",
    "evaluate_selectors",
    "make_plots",
    "policy_note",
    "render",
    "render_claims",
    "render_selectors",
    "write_leaderboard",
    "write_report",
]
