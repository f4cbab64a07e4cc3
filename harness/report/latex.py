"""The leaderboard as a LaTeX table (``ckd leaderboard --latex``): ``<storage>/<name>/leaderboard.tex``.

A booktabs ``tabular`` written by pandas' ``Styler.to_latex`` with every cell and header
LaTeX-escaped by the Styler, so choices such as ``snapshot:[0.5,1.0]``, ``%`` and ``_`` compile.
It holds the columns a paper needs (choice, test accuracy, trajectories x students, the
difference from the reference with its 95% CI, the answer); the CSV keeps the rest. Needs
``\\usepackage{booktabs}``; ``±`` and ``×`` are plain UTF-8 (pdflatex reads them since 2018).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.objects import ObjectPath, location
from harness.report.leaderboard import NA, diff_cell, n_cell, pct


def _acc(b: dict) -> str:
    std = pct(b.get("test_std"))
    return pct(b.get("test_mean")) + ("" if std == NA else f" ± {std}")


def _answer(c: dict | None, reference: str) -> str:
    if c is None:
        return NA
    if c.get("same"):
        return f"same runs as {reference}"
    if c.get("self"):
        return "reference"
    return str(c.get("answer") or NA)


def leaderboard_frame(board: list[dict]) -> pd.DataFrame:
    """The table's rows (one per leaderboard entry, in its order); dataset, teacher and student
    columns only where they vary."""
    reference = board[0].get("reference", "full") if board else "full"
    varying = [
        (header, key)
        for header, key in (("dataset", "dataset"), ("teacher", "teacher_arch"), ("student", "student_arch"))
        if len({b.get(key) for b in board} - {None}) > 1  # (none has no teacher)
    ]
    records = [
        {
            **{header: b.get(key) or "-" for header, key in varying},
            "teacher choice": str(b["teacher_choice"]),
            "test acc. % (mean ± sd)": _acc(b),
            "n traj.×stud.": n_cell(b),
            f"diff. vs {reference} (pp) [95% CI]": diff_cell(b.get("vs_ref")),
            "answer": _answer(b.get("vs_ref"), reference),
        }
        for b in board
    ]
    return pd.DataFrame.from_records(records)


def render_latex(board: list[dict]) -> str:
    """A booktabs ``tabular`` of the board, text columns left-aligned and numbers right-aligned,
    every cell and header escaped for LaTeX."""
    frame = leaderboard_frame(board)
    numeric = {"test acc. % (mean ± sd)", "n traj.×stud."} | {c for c in frame.columns if c.startswith("diff.")}
    styler = frame.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return styler.to_latex(
        hrules=True,  # \toprule, \midrule, \bottomrule (booktabs)
        column_format="".join("r" if c in numeric else "l" for c in frame.columns),
    )


def write_latex(root: Path | ObjectPath, board: list[dict]) -> Path | ObjectPath:
    """Write ``leaderboard.tex`` under ``root`` (atomically; an object: one PUT) and return its path."""
    from harness.fileio import atomic_write_bytes  # here: fileio imports torch

    path = location(root) / "leaderboard.tex"
    atomic_write_bytes(path, render_latex(board).encode("utf-8"))
    return path
