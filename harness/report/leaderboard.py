"""Leaderboard rendering: a board (``harness.report.board``) as text, Markdown, CSV or HTML.

Every rendering carries the policy note (how the hyperparameters were chosen, what the paired
columns mean, the power of the comparison); ``harness.report.report.write_report`` writes the
files next to the results.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import statistics
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any

from harness.report.board import REPORTED
from harness.report.console import NA_SPELLINGS, cut, fit_table, short_answer
from harness.report.paired import PAIRED_COLUMNS, PAIRED_HEADERS
from harness.report.stats import min_detectable_effect, trajectories_needed
from harness.report.tables import html_table, markdown_table, page, text_table, wrap
from harness.teacher_choices import choice_of

FORMATS = ("text", "console", "markdown", "csv", "html")
NA = "n/a"
EMPTY_MESSAGE = "No student results yet: run `ckd sweep CONFIG` (or `ckd run CONFIG`) to fill {where}."

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# rendering


def pct(x: float | None, digits: int = 2) -> str:
    return NA if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def signed_pct(x: float | None, digits: int = 2) -> str:
    return NA if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.{digits}f}"


def _plain(x: Any) -> str:
    if x is None:
        return NA
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def _p(x: float | None) -> str:
    if x is None or math.isnan(x):
        return NA
    return f"{x:.3f}" if x >= 0.001 else f"{x:.1e}"


def _hours(x: float | None, digits: int = 3) -> str:
    """Student compute in hours (``compute``), n/a when no row recorded its wall time."""
    return NA if x is None else f"{x:.{digits}g}"


def _is_ensemble(b: dict) -> bool:
    return b.get("members", 0) > 1


def _hp(b: dict, key: str) -> str:
    return "-" if choice_of(b["teacher_choice"]).is_none else _plain(b[key])


def _choice_cell(b: dict) -> str:
    same = f" (= {', '.join(b['aliases'])})" if b.get("aliases") else ""
    return str(choice_of(b["teacher_choice"])) + same + (" [unstable]" if b.get("unstable") else "")


def n_cell(b: dict) -> str:
    """``5×2`` (trajectories × students per trajectory; ``5×1-3`` when uneven), or the seeds of ``none``."""
    per = b.get("students_per_trajectory")
    if not b.get("trajectories_n") or not per:
        return str(b["n"])
    return f"{b['trajectories_n']}×{per[0] if per[0] == per[1] else f'{per[0]}-{per[1]}'}"


def diff_cell(c: dict | None) -> str:
    """``+0.16 [-0.50, +0.82]`` (pp), ``-`` for the reference itself, n/a without pairs."""
    if c is None:
        return NA
    if c.get("self"):
        return "-"
    return f"{signed_pct(c['diff_mean'])} [{signed_pct(c['diff_ci_low'])}, {signed_pct(c['diff_ci_high'])}]"


def _field(c: dict | None, key: str, fmt: Callable[[Any], str] = str) -> str:
    if c is None:
        return NA
    if c.get("same") and key == "verdict":
        return f"= {c['ref']} (same runs: not tested)"
    return "-" if c.get("self") else fmt(c[key])


def _wtl(c: dict | None) -> str:
    return _field(c, "wins", lambda _: f"{c['wins']}/{c['ties']}/{c['losses']}")


def _ref_name(board: list[dict]) -> str:
    return board[0].get("reference", "full") if board else "full"


def columns(board: list[dict]) -> list[tuple[str, Callable[[dict], str]]]:
    """(header, cell) for the human-readable formats; the reference's name is in the headers."""
    ref = _ref_name(board)
    return [
        ("dataset", lambda b: b["dataset"]),
        ("teacher", lambda b: b["teacher_arch"] or "-"),
        ("student", lambda b: b["student_arch"]),
        ("teacher choice", _choice_cell),
        ("test acc % (mean ± std)", lambda b: f"{pct(b['test_mean'])} ± {pct(b['test_std']):>4}"),
        ("n traj×stud", n_cell),
        (f"Δ vs {ref} pp [95% CI]", lambda b: diff_cell(b.get("vs_ref"))),
        ("W/T/L", lambda b: _wtl(b.get("vs_ref"))),
        ("p (Holm)", lambda b: _field(b.get("vs_ref"), "p_holm", _p)),
        ("verdict", lambda b: _field(b.get("vs_ref"), "verdict")),
        ("Δ vs none pp [95% CI]", lambda b: diff_cell(b.get("vs_none"))),
        ("teacher acc %", lambda b: pct(b["teacher_test_acc"])),
        ("T", lambda b: _hp(b, "temperature")),
        ("kd_weight", lambda b: _hp(b, "kd_weight")),
        ("reduce", lambda b: _hp(b, "ensemble_reduce") if _is_ensemble(b) else "-"),
        ("val acc %", lambda b: pct(b["val_mean"])),
        ("teacher epochs", lambda b: b["teacher_epochs"] or "-"),
        ("epoch reported", lambda b: b["reported_epoch"]),
        ("student h", lambda b: _hours(b.get("compute"))),
    ]


NUMERIC_HEADERS = {
    "test acc % (mean ± std)",
    "n traj×stud",
    "W/T/L",
    "p (Holm)",
    "teacher acc %",
    "T",
    "kd_weight",
    "val acc %",
    "student h",
    "test acc %",
}


def is_numeric_header(header: str) -> bool:
    """Right-aligned columns: numbers, intervals, counts and p-values."""
    return header in NUMERIC_HEADERS or header.startswith("Δ")


def _paired_csv(c: dict | None, key: str, reference: str) -> Any:
    """One paired CSV cell: n/a on the reference row (its ``answer`` / ``verdict``: ``reference``)
    and without pairs."""
    if key == "ref":
        return reference
    if c is None:
        return NA
    if c.get("same") and key in ("answer", "verdict"):
        return f"same runs as {reference}"
    if c.get("self"):
        return "reference" if key in ("answer", "verdict") else NA
    if key.startswith("diff_"):
        return pct(c[key], 4)
    if key.startswith("p_"):
        return NA if c[key] is None or math.isnan(c[key]) else f"{c[key]:.6g}"
    return NA if c.get(key) is None else c[key]


def _paired_cell(side: str, key: str, reference: str, b: dict) -> Any:
    return _paired_csv(b.get(side), key, reference)


def _paired_header(key: str) -> str:
    """The CSV name of a paired field: differences (in pp) end in ``_pct`` like every percentage."""
    return PAIRED_HEADERS.get(key, key) + ("_pct" if key.startswith("diff_") else "")


def csv_cell(value: Any) -> Any:
    """One CSV cell with the one NA marker: None, NaN, '' and '-' become ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    return NA if isinstance(value, str) and value in NA_SPELLINGS else value


def csv_columns(board: list[dict]) -> list[tuple[str, Callable[[dict], Any]]]:
    """Machine-readable columns (percentages in ``*_pct`` columns, n/a for missing): the row, then
    the paired comparison against the reference (``ref`` ... ``verdict``), then against none
    (``none_*``), then the chosen setting and ``compute_student_h``."""
    ref = _ref_name(board)
    base: list[tuple[str, Callable[[dict], Any]]] = [
        ("dataset", lambda b: b["dataset"]),
        ("teacher_arch", lambda b: b["teacher_arch"] or ""),
        ("student_arch", lambda b: b["student_arch"]),
        ("teacher_choice", lambda b: b["teacher_choice"]),
        ("test_acc_mean_pct", lambda b: pct(b["test_mean"], 4)),
        ("test_acc_std_pct", lambda b: pct(b["test_std"], 4)),
        ("n", lambda b: b["n"]),
        ("trajectories", lambda b: "" if b.get("trajectories_n") is None else b["trajectories_n"]),
        (
            "students_per_trajectory",
            lambda b: (
                ""
                if not b.get("students_per_trajectory")
                else "-".join(map(str, sorted(set(b["students_per_trajectory"]))))
            ),
        ),
        ("seeds", lambda b: " ".join(map(str, b["seeds"]))),
    ]
    paired = [(_paired_header(k), partial(_paired_cell, "vs_ref", k, ref)) for k in PAIRED_COLUMNS]
    vs_none = [(f"none_{_paired_header(k)}", partial(_paired_cell, "vs_none", k, "none")) for k in PAIRED_COLUMNS[1:]]
    rest: list[tuple[str, Callable[[dict], Any]]] = [
        ("delta_vs_none_pct", lambda b: pct(b["delta_vs_none"], 4)),
        ("teacher_test_acc_pct", lambda b: pct(b["teacher_test_acc"], 4)),
        ("teacher_val_acc_pct", lambda b: pct(b["teacher_val_acc"], 4)),
        ("temperature", lambda b: _plain(b["temperature"])),
        ("kd_weight", lambda b: _plain(b["kd_weight"])),
        ("ensemble_reduce", lambda b: _plain(b["ensemble_reduce"])),
        ("val_acc_mean_pct", lambda b: pct(b["val_mean"], 4)),
        ("val_acc_std_pct", lambda b: pct(b["val_std"], 4)),
        ("settings_tried", lambda b: b["settings_tried"]),
        ("teacher_epochs", lambda b: b["teacher_epochs"]),
        ("unstable", lambda b: "" if b.get("unstable") is None else str(bool(b["unstable"])).lower()),
        ("reported", lambda b: b["reported"]),
        ("reported_epoch", lambda b: b["reported_epoch"]),
        ("compute_student_h", lambda b: _hours(b.get("compute"), 6)),
    ]
    return base + paired + vs_none + rest


def _median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def power_note(board: list[dict]) -> str:
    """Power in trajectories and students: the minimum detectable effect at 80% power for the
    observed spread of the trajectory means, and the trajectories a 0.3 pp effect needs."""
    tests = [c for c in (b.get("vs_ref") for b in board) if c and not c.get("self") and c.get("diff_sd")]
    if not tests:
        return "Power: no comparison has two or more trajectories: no power statement possible."
    sd, n = _median([c["diff_sd"] for c in tests]), int(statistics.median(c["n"] for c in tests))
    per = int(statistics.median(c["students"] / c["n"] for c in tests))
    sb, sw = _median([c["diff_sd_between"] for c in tests]), _median([c["diff_sd_within"] for c in tests])
    alpha = board[0].get("alpha", 0.05)
    mde = min_detectable_effect(sd, n, alpha)
    note = (
        f"Power: n = {n} trajectories × {per} student(s) each (median); the trajectory means of the differences "
        f"vs {_ref_name(board)} spread by {pct(sd)} pp (median sd), the minimum detectable effect at 80% power "
        f"(alpha {alpha:g}, two-sided t over trajectories) is {pct(mde)} pp."
    )
    if sb is not None and sw is not None:
        need, need_inf = trajectories_needed(0.003, sb, sw, per, alpha), trajectories_needed(0.003, sb, 0.0, per, alpha)
        note += (
            f" Variance components: trajectory sd {pct(sb)} pp, student sd {pct(sw)} pp; detecting 0.3 pp would "
            f"need about {need} trajectories at {per} student(s) each"
            + (f" (at least {need_inf} however many students per trajectory)." if need_inf else ".")
        )
    else:  # one student per trajectory: the two parts cannot be told apart
        need = trajectories_needed(0.003, sd, None, per, alpha)
        note += (
            f" Detecting 0.3 pp would need about {need} trajectories at {per} student(s) each (with one student "
            "per trajectory the trajectory and student parts of the spread cannot be told apart)."
        )
    return note


def policy_note(board: list[dict]) -> str:
    """The selection policy and the statistics in words (footer of every rendering)."""
    reported = board[0]["reported"] if board else "final"
    words = REPORTED[reported][2]
    seeds = sorted({b["n"] for b in board})
    skipped = board[0].get("skipped_rows", 0) if board else 0
    ref, alpha = _ref_name(board), (board[0].get("alpha", 0.05) if board else 0.05)
    margin = 100 * (board[0].get("margin", 0.005) if board else 0.005)
    family = sum(1 for b in board if (b.get("vs_ref") or {}).get("p_value") is not None)
    note = (
        f"Student test accuracy at {words}, mean ± sample std (n-1) over seeds (n per row; std n/a when n = 1). "
        "Hyperparameters (T, kd_weight, ensemble_reduce) chosen per row by mean validation accuracy "
        "at the same epoch, among the settings with the most seeds; test accuracy is only reported. "
        "Teacher acc: test accuracy of the resolved teacher checkpoint(s) or ensemble. "
        "n traj×stud: teacher trajectories × students per trajectory; the trajectory is the unit of replication. "
        f"Δ vs {ref} / Δ vs none: runs matched by (student seed, teacher trajectory) (by student seed against "
        "none), differences averaged per trajectory, then the mean over trajectories with a 95% Student-t "
        "interval (df = trajectories - 1); W/T/L: trajectories whose mean difference is positive / zero / negative; "
        f"p: two-sided t-test of the trajectory means. Verdict at alpha {alpha:g}: better / worse (difference "
        f"test), equivalent within ±{margin:.2f} pp (TOST, report.equivalence_margin), else undecided with about "
        "how many more trajectories would decide it (80% power if the true difference were the observed one). "
        f"Multiplicity: one Holm family for this table, the {family} rows compared with {ref} (the difference and "
        "the equivalence p-values each corrected across them); rows that are the same runs as the reference "
        "(same checkpoints and settings) are not tested; the vs-none columns of the CSV are a second family. "
        "student h: the summed wall time of the students behind the row (the chosen setting's runs; a packed "
        "run counts its share), in CPU- or device-hours; teachers and scoring are not counted. "
        f"'-' marks the reference row (n/a in the CSV). {power_note(board)} "
        f"Seeds per row: {', '.join(map(str, seeds)) or '-'}."
    )
    if any(b.get("unstable") for b in board):
        note += (
            " [unstable]: the scorer's pick for at least one trajectory is the argmax in fewer than half "
            "of the resamples."
        )
    if skipped:
        note += f" {skipped} result row(s) without the reported metrics were left out."
    return note


def cells(board: list[dict]) -> tuple[list[str], list[list[str]]]:
    cols = columns(board)
    return [h for h, _ in cols], [[str(f(b)) for _, f in cols] for b in board]


def render_text(board: list[dict]) -> str:
    headers, rows = cells(board)
    return text_table(headers, rows, is_numeric_header) + "\n\n" + wrap(policy_note(board)) + "\n"


CONSOLE_OPTIONAL = ("student h", "teacher acc %", "p (Holm)", "W/T/L")  # dropped first to last


def _console_answer(b: dict) -> str:
    c = b.get("vs_ref")
    if c is None:
        return NA
    if c.get("same"):
        return f"= {c['ref']} (same runs)"
    return "reference" if c.get("self") else short_answer(str(c["verdict"]))


def console_columns(board: list[dict]) -> list[tuple[str, Callable[[dict], str]]]:
    """The console's columns, taken from ``columns``: the essential ones, then the optional ones
    (``CONSOLE_OPTIONAL``), and the short answer in place of the verdict."""
    cell, delta = dict(columns(board)), f"Δ vs {_ref_name(board)} pp [95% CI]"
    return [
        ("teacher choice", cell["teacher choice"]),
        ("test acc %", cell["test acc % (mean ± std)"]),
        ("n traj×stud", cell["n traj×stud"]),
        (delta, cell[delta]),
        ("answer", _console_answer),
        *((h, cell[h]) for h in reversed(CONSOLE_OPTIONAL)),
    ]


def render_console(board: list[dict], width: int = 120) -> str:
    """The leaderboard for a terminal: one table per (dataset, student) under a heading, the
    essential columns and short answers, every line at most ``width`` characters (the files
    keep every column)."""
    cols, ref = console_columns(board), _ref_name(board)
    groups: dict[tuple, list[dict]] = {}
    for b in board:
        groups.setdefault((b["dataset"], b["student_arch"]), []).append(b)
    parts = []
    for (dataset, student), entries in groups.items():
        teachers = sorted({str(b["teacher_arch"]) for b in entries if b["teacher_arch"]}) or ["no teacher"]
        rows = [[str(f(b)) for _, f in cols] for b in entries]
        table = fit_table([h for h, _ in cols], rows, is_numeric_header, CONSOLE_OPTIONAL, width)
        parts += [cut(f"{dataset}: {', '.join(teachers)} -> {student}", width), table, ""]
    note = (
        f"Δ vs {ref}: paired difference in pp, mean over teacher trajectories with a 95% t interval; answer at "
        f"alpha {board[0].get('alpha', 0.05):g}, Holm-corrected across the table. Every column and the selection "
        "policy: leaderboard.md / leaderboard.csv / leaderboard.html."
    )
    if any(b.get("unstable") for b in board):
        note += " [unstable]: the scorer's pick is the argmax in fewer than half of the resamples."
    if board[0].get("skipped_rows"):
        note += f" {board[0]['skipped_rows']} result row(s) without the reported metrics were left out."
    return "\n".join(parts) + "\n" + wrap(note) + "\n"


def render_markdown(board: list[dict]) -> str:
    headers, rows = cells(board)
    return (
        "\n".join(
            [
                "# Leaderboard",
                "",
                f"_Selection policy:_ {policy_note(board)}",
                "",
                markdown_table(headers, rows, is_numeric_header),
            ]
        )
        + "\n"
    )


def render_csv(board: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = csv_columns(board)
    w.writerow([h for h, _ in cols])
    for b in board:
        w.writerow([csv_cell(f(b)) for _, f in cols])
    return buf.getvalue()


def leaderboard_section(board: list[dict]) -> list[str]:
    """The leaderboard and its policy note as HTML (for ``harness.report.html``)."""
    headers, rows = cells(board)
    classes = ["reference" if (b.get("vs_ref") or {}).get("self") else "" for b in board]
    return [
        "<h2>Leaderboard</h2>",
        f'<p class="note">{html.escape(policy_note(board))}</p>',
        html_table("leaderboard", headers, rows, is_numeric_header, classes),
    ]


def render_html(board: list[dict]) -> str:
    """A self-contained page with the leaderboard alone (``harness.report.html`` adds the claims,
    selector tables and plots for ``leaderboard.html``)."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return page("Leaderboard", f"Leaderboard ({date})", f"generated {date} · ckd-harness", leaderboard_section(board))


_RENDERERS = dict(text=render_text, console=render_console, markdown=render_markdown, csv=render_csv, html=render_html)


def render(board: list[dict], fmt: str = "text", where: str = "results.jsonl") -> str:
    """The board as ``text`` (fixed-width, every column), ``console`` (the essential columns in at
    most 120 characters a line), ``markdown``, ``csv`` or ``html``.

    An empty board renders as a message saying how to produce results (CSV: header only).
    """
    if fmt in ("md",):
        fmt = "markdown"
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown leaderboard format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not board:
        msg = EMPTY_MESSAGE.format(where=where)
        if fmt == "csv":
            return render_csv([])
        if fmt == "markdown":
            return f"# Leaderboard\n\n{msg}\n"
        if fmt == "html":
            return (
                '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Leaderboard</title></head><body>\n'
                f"<p>{html.escape(msg)}</p>\n</body></html>\n"
            )
        return msg + "\n"
    return _RENDERERS[fmt](board)
