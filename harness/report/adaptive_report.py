"""The adaptive sweep's report: each round's look at each comparison (trajectories × students, the
difference with its repeated confidence interval, the p-value against the round's nominal level,
the answer), the compute to decision against the fixed design of the same power, and a plot of
the intervals narrowing round by round.

Input: the rounds journal ``<storage>/<name>/adaptive/rounds.json`` written by the runner.
Differences and margins there are fractions; everything here prints them in pp (like the
leaderboard). A comparison keeps its answer once decided; its later looks may be absent.
Output (``write_adaptive``): ``adaptive.md`` and ``adaptive.csv`` next to ``claims.md``, and
``plots/adaptive_intervals.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.objects import ObjectPath, location
from harness.report.console import fit_table
from harness.report.figure import figure, footnote, save
from harness.report.leaderboard import NA, signed_pct
from harness.report.stats import EQUIVALENT, UNDECIDED, answer_text
from harness.report.tables import escape, html_table, markdown_table, wrap

JOURNAL = Path("adaptive") / "rounds.json"
JOURNAL_MAX_BYTES = 32 * 2**20  # as harness.adaptive.MAX_JOURNAL_BYTES (not imported: it would pull in the runner)
UNITS = ("teacher_epochs", "student_epochs", "device_hours")
UNIT_NAMES = {"teacher_epochs": "teacher-epochs", "student_epochs": "student-epochs", "device_hours": "device-hours"}
SPENDING = {"obf": "O'Brien-Fleming-type alpha spending", "pocock": "Pocock-type alpha spending"}
UNDECIDED_WHY = {
    "budget": "budget spent",
    "max_rounds": "rounds exhausted",
    "information": "foreseen information reached",
    "decided": "stopped",
}
SPENT = "spent (t-ep / s-ep / h)"
ROUND_HEADERS = ["round", "comparison", "n", "Δ pp [RCI]", "p / nominal", "TOST p / nominal", "answer", SPENT]
ROUND_NUMERIC = {"round", "n", "Δ pp [RCI]", "p / nominal", "TOST p / nominal", SPENT}
COMPUTE_HEADERS = ["comparison", "answer", "decided at", "n", SPENT, "fixed n", "fixed compute", "adaptive / fixed"]
COMPUTE_NUMERIC = {"decided at", "n", SPENT, "fixed n", "fixed compute", "adaptive / fixed"}


def load_rounds(root: Path | ObjectPath) -> dict | None:
    """The rounds journal under ``root`` (``<storage>/<name>``), or None when there is none; a
    file that is not a journal is a ``ValueError`` naming it (a damaged report input must not
    pass silently)."""
    from harness.fileio import read_json_object  # here: fileio imports torch, the tables need not

    path = location(root) / JOURNAL
    if not path.exists() and not path.is_symlink():
        return None
    journal = read_json_object(path, JOURNAL_MAX_BYTES, "rounds journal")
    if not isinstance(journal.get("rounds"), list) or not isinstance(journal.get("comparisons", {}), dict):
        raise ValueError(f"rounds journal {path} has no list of rounds; move it away and re-run the adaptive sweep")
    return journal


# ---------------------------------------------------------------------------------------------
# cells


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _p(x: Any) -> str:
    x = _num(x)
    if x is None:
        return NA
    return f"{x:.3f}" if x >= 0.001 else f"{x:.1e}"


def _pp(x: Any) -> str:
    x = _num(x)
    return NA if x is None else f"{100 * x:.2f}"


def _amount(x: Any) -> str:
    x = _num(x)
    return NA if x is None else f"{x:.3g}" if not float(x).is_integer() else f"{int(x)}"


def _spent(spent: dict | None) -> str:
    """``400 / 3300 / 0.05``: teacher-epochs / student-epochs / device-hours (n/a where not counted)."""
    spent = spent or {}
    return " / ".join(_amount(spent.get(u)) for u in UNITS)


def _n(d: dict) -> str:
    """``8×2``: trajectories × students per trajectory."""
    return f"{d.get('n', NA)}×{d.get('m', NA)}"


def _margin(journal: dict, look: dict | None = None) -> float:
    return _num((look or {}).get("margin")) or _num(journal.get("design", {}).get("margin")) or 0.0


def _answer_word(journal: dict, word: str, look: dict | None = None) -> str:
    """``better``, ``equivalent within ±0.50 pp``, ``undecided``."""
    if word == EQUIVALENT:
        return answer_text(EQUIVALENT, _margin(journal, look), None, 2)
    return word or UNDECIDED


def _decision(journal: dict, key: str) -> tuple[str, int | None, dict | None]:
    """A comparison's final answer, the round that decided it (None: undecided) and its last look."""
    answer, decided_at, last = UNDECIDED, None, None
    for r in journal.get("rounds", []):
        look = r.get("looks", {}).get(key)
        if look is None:
            continue
        last = look
        if look.get("decided_at") is not None and look.get("answer", UNDECIDED) != UNDECIDED:
            answer, decided_at = look["answer"], int(look["decided_at"])
    return answer, decided_at, last


def _keys(journal: dict) -> list[str]:
    keys = list(journal.get("comparisons", {}))
    for r in journal.get("rounds", []):
        keys += [k for k in r.get("looks", {}) if k not in keys]
    return keys


def _tost_p(look: dict) -> float | None:
    lo, hi = _num(look.get("p_lower")), _num(look.get("p_upper"))
    return None if lo is None or hi is None else max(lo, hi)


# ---------------------------------------------------------------------------------------------
# tables


def _round_row(journal: dict, r: dict, key: str, decided: tuple[str, int | None]) -> list[str]:
    look = r.get("looks", {}).get(key)
    answer, decided_at = decided
    k = r.get("round")
    if look is None:
        cells = ["-"] * 4
        if decided_at is not None and k is not None and k > decided_at:
            word = f"{_answer_word(journal, answer)} (round {decided_at})"
        else:
            word = NA if r.get("status") == "done" else f"{r.get('status') or 'pending'}: {_n(r)}"
    else:
        diff = f"{signed_pct(_num(look.get('diff_mean')))} [{signed_pct(_num(look.get('ci_low')))}, "
        cells = [
            _n(look),
            diff + f"{signed_pct(_num(look.get('ci_high')))}]",
            f"{_p(look.get('p_value'))} / {_p(look.get('nominal_diff'))}",
            f"{_p(_tost_p(look))} / {_p(look.get('nominal_equiv'))}",
        ]
        word = _answer_word(journal, look.get("answer", UNDECIDED), look)
        at = look.get("decided_at")
        if at is not None and k is not None and at < k and word != UNDECIDED:
            word += f" (round {at})"
    return [str(k), key, *cells, word, _spent(r.get("spent"))]


def rounds_table(journal: dict) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per (round, comparison): trajectories × students, the difference in pp
    with its repeated confidence interval (RCI: valid although every round looks), the p-values
    of the difference and of the equivalence test (TOST) against the round's nominal levels, the
    answer (kept, with the deciding round, once decided) and the compute spent so far."""
    keys = _keys(journal)
    decided = {key: _decision(journal, key)[:2] for key in keys}
    rows = [_round_row(journal, r, key, decided[key]) for r in journal.get("rounds", []) for key in keys]
    return list(ROUND_HEADERS), rows


def _unit(journal: dict) -> str:
    """The compute unit of the comparison with the fixed design: device-hours, which weigh teacher
    and student epochs as the planner does (measured under a device-hours budget, else nominal
    from the models' FLOPs: ``harness/adaptive_rounds.py``); student-epochs in an older journal
    without them."""
    rounds = [r for r in journal.get("rounds", []) if r.get("spent")]
    has_hours = rounds and all(_num(r["spent"].get("device_hours")) for r in rounds)
    return "device_hours" if has_hours else "student_epochs"


def _spent_at(journal: dict, round_no: int | None) -> dict:
    """The cumulative compute after round ``round_no`` (the last round when None)."""
    rounds = [r for r in journal.get("rounds", []) if r.get("spent")]  # a planned round has spent nothing
    match = [r for r in rounds if r.get("round") == round_no] if round_no is not None else rounds[-1:]
    return match[-1]["spent"] if match else {}


def _ratio(spent: dict, fixed: dict, unit: str) -> str:
    a, b = _num(spent.get(unit)), _num(fixed.get(unit))
    return NA if a is None or not b else f"{a / b:.2f} ({UNIT_NAMES[unit]})"


def compute_table(journal: dict) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per comparison: its answer and the round that decided it with the
    compute spent by then, against the fixed design of the same power (trajectories × students,
    its compute, and the ratio adaptive / fixed in the budget's unit); an undecided comparison
    says why (``undecided: budget spent``) and counts everything spent."""
    unit, stop = _unit(journal), (journal.get("stopped") or {}).get("reason")
    rows = []
    for key in _keys(journal):
        answer, decided_at, last = _decision(journal, key)
        if decided_at is None:
            word = f"undecided: {UNDECIDED_WHY[stop]}" if stop in UNDECIDED_WHY else "undecided: still running"
        else:
            word = _answer_word(journal, answer, last)
        at_look = next((r.get("looks", {}).get(key) for r in journal["rounds"] if r.get("round") == decided_at), None)
        look = at_look or last or {}
        spent = _spent_at(journal, decided_at)
        fixed = journal.get("fixed", {}).get(key) or {}
        fixed_n = f"{fixed['trajectories']}×{fixed.get('m', NA)}" if fixed.get("trajectories") else NA
        n = _n(look) if look.get("n") else NA
        at = NA if decided_at is None else str(decided_at)
        rows.append(
            [
                key,
                word,
                at,
                n,
                _spent(spent),
                fixed_n,
                _spent(fixed.get("compute")),
                _ratio(spent, fixed.get("compute") or {}, unit),
            ]
        )
    return list(COMPUTE_HEADERS), rows


# ---------------------------------------------------------------------------------------------
# rendering


def design_lines(journal: dict) -> list[str]:
    """The design in words: alpha, spending, margin, budget, why it stopped, the comparisons."""
    d = journal.get("design", {})
    budget = ", ".join(f"{_amount(v)} {UNIT_NAMES.get(u, u)}" for u, v in (d.get("budget") or {}).items() if _num(v))
    k = d.get("comparisons", len(_keys(journal)))
    plural = "" if k == 1 else "s"
    lines = [
        f"Alpha {_amount(d.get('alpha'))} over {k} comparison{plural}: "
        f"{_amount(d.get('alpha_each'))} each (Bonferroni), "
        f"{SPENDING.get(d.get('spending'), d.get('spending') or 'no spending rule named')} across rounds; "
        f"equivalence margin ±{_pp(d.get('margin'))} pp; budget: {budget or 'none'}.",
        f"Stopped: {(journal.get('stopped') or {}).get('text') or 'not yet (the sweep is still running)'}.",
        "RCI: repeated confidence interval at the round's nominal level (valid although every round looks); "
        "p / nominal: the difference's p-value against the level it must reach at this round; "
        "spent: cumulative teacher-epochs / student-epochs / device-hours.",
    ]
    lines += [f"{key}: {text}" for key, text in journal.get("comparisons", {}).items() if text != key]
    return lines


def render_adaptive(journal: dict, fmt: str = "text", width: int = 120) -> str:
    """The adaptive report as ``text`` (console width ``width``), ``md`` (or ``markdown``) or an
    ``html`` fragment: the design, the rounds table and the compute-to-decision table."""
    lines = design_lines(journal)
    (rh, rr), (ch, cr) = rounds_table(journal), compute_table(journal)
    if fmt in ("md", "markdown"):
        return (
            "\n\n".join(
                [
                    "# Adaptive sweep",
                    "\n".join(f"_{line}_  " for line in lines),
                    "## Rounds",
                    markdown_table(rh, rr, ROUND_NUMERIC.__contains__),
                    "## Compute to decision against the fixed design of the same power",
                    markdown_table(ch, cr, COMPUTE_NUMERIC.__contains__),
                ]
            )
            + "\n"
        )
    if fmt == "html":
        return (
            "\n".join(
                [
                    "<h2>Adaptive sweep</h2>",
                    *(f'<p class="note">{escape(line)}</p>' for line in lines),
                    "<h3>Rounds</h3>",
                    html_table("adaptive-rounds", rh, rr, ROUND_NUMERIC.__contains__),
                    "<h3>Compute to decision against the fixed design of the same power</h3>",
                    html_table("adaptive-compute", ch, cr, COMPUTE_NUMERIC.__contains__),
                ]
            )
            + "\n"
        )
    if fmt != "text":
        raise ValueError(f"unknown adaptive report format {fmt!r}; choose one of text, md, html")
    rounds = fit_table(rh, rr, ROUND_NUMERIC.__contains__, ("TOST p / nominal", SPENT), width)
    compute = fit_table(ch, cr, COMPUTE_NUMERIC.__contains__, ("fixed compute", SPENT), width)
    return "\n\n".join(["\n".join(wrap(line, width) for line in lines), rounds, compute]) + "\n"


def rounds_frame(journal: dict):
    """The rounds as a tidy pandas DataFrame (one row per round and comparison with a look or a
    kept answer): percentages in ``*_pct`` columns, compute in its units; the CSV's content."""
    import pandas as pd

    keys, records = _keys(journal), []
    for r in journal.get("rounds", []):
        for key in keys:
            look = r.get("looks", {}).get(key) or {}
            answer, decided_at, _ = _decision(journal, key)
            kept = not look and decided_at is not None and r.get("round", -1) > decided_at
            records.append(
                {
                    "round": r.get("round"),
                    "comparison": key,
                    "status": r.get("status"),
                    "n": look.get("n"),
                    "m": look.get("m"),
                    **{f"{f}_pct": _pct_value(look.get(f)) for f in ("diff_mean", "ci_low", "ci_high", "margin")},
                    "p_value": _num(look.get("p_value")),
                    "nominal_diff": _num(look.get("nominal_diff")),
                    "p_tost": _tost_p(look) if look else None,
                    "nominal_equiv": _num(look.get("nominal_equiv")),
                    "answer": answer if kept else (look.get("answer", UNDECIDED) if look else None),
                    "decided_at": decided_at if kept else look.get("decided_at"),
                    **{f"spent_{u}": _num((r.get("spent") or {}).get(u)) for u in UNITS},
                }
            )
    return pd.DataFrame.from_records(records)


def _pct_value(x: Any) -> float | None:
    x = _num(x)
    return None if x is None else round(100 * x, 4)


# ---------------------------------------------------------------------------------------------
# the plot and the files

ANSWER_COLOURS = {"better": "#2a7d2e", "worse": "#b3261e", "equivalent": "#1f5fae", UNDECIDED: "#555555"}


def _x_axis(journal: dict) -> tuple[str | None, str]:
    """The unit of the plot's x axis (device-hours when the budget is in them, else student-epochs,
    else what every round counted; None: the round number) and its label."""
    rounds = [r for r in journal.get("rounds", []) if r.get("looks")]
    first = "device_hours" if _unit(journal) == "device_hours" else "student_epochs"
    for unit in (first, "student_epochs", "device_hours", "teacher_epochs"):
        if rounds and all(_num((r.get("spent") or {}).get(unit)) is not None for r in rounds):
            return unit, f"compute spent ({UNIT_NAMES[unit]}, cumulative)"
    return None, "round"


def _panel(ax, journal: dict, key: str, unit: str | None, xlabel: str) -> None:
    """One comparison: the estimate and its RCI per round, 0, the ±margin band, the fixed design's
    compute (dashed) and the answer in the title."""
    points = []
    for r in journal.get("rounds", []):
        look = r.get("looks", {}).get(key)
        x = r.get("round") if unit is None else _num((r.get("spent") or {}).get(unit))
        if look and x is not None and None not in (_num(look.get(f)) for f in ("diff_mean", "ci_low", "ci_high")):
            points.append((x, 100 * look["diff_mean"], 100 * look["ci_low"], 100 * look["ci_high"], look))
    answer, decided_at, last = _decision(journal, key)
    colour = ANSWER_COLOURS.get(answer, ANSWER_COLOURS[UNDECIDED])
    margin = 100 * _margin(journal, last)
    if margin:
        ax.axhspan(-margin, margin, color="#1f5fae", alpha=0.1, lw=0, label=f"±{margin:.2f} pp margin")
    ax.axhline(0, color="0.3", lw=0.8)
    for x, m, lo, hi, look in points:
        decided = look.get("decided_at") is not None and look.get("answer", UNDECIDED) != UNDECIDED
        ax.errorbar([x], [m], yerr=[[m - lo], [hi - m]], fmt="o", capsize=4, color=colour if decided else "0.35")
        ax.annotate(
            _n(look),
            (x, hi),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    fixed = _num(((journal.get("fixed", {}).get(key) or {}).get("compute") or {}).get(unit or ""))
    if fixed:
        ax.axvline(fixed, color="0.4", ls="--", lw=1, label="fixed design, same power")
    said = _answer_word(journal, answer, last) + ("" if decided_at is None else f" at round {decided_at}")
    title = journal.get("comparisons", {}).get(key, key)
    ax.set_title(f"{title}\n{said}", fontsize=9, color=colour)
    ax.set_xlabel(xlabel, fontsize=8)
    # linear within a few margins, logarithmic beyond: the first rounds' wide intervals and the
    # last rounds' narrow ones stay readable on one axis
    ax.set_yscale("symlog", linthresh=max(4 * margin, 1.0) if margin else 1.0)
    ax.set_ylabel("difference (pp), RCI (symlog)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.margins(x=0.12, y=0.15)
    if margin or fixed:
        ax.legend(fontsize=7, loc="best")


def plot_rounds(journal: dict, out_dir: Path) -> Path | None:
    """``adaptive_intervals.png``: one panel per comparison, the difference and its repeated CI
    per round against the compute spent, so the intervals are seen narrowing until they leave 0
    or fall inside the margin; None when no round has a look."""
    keys = [k for k in _keys(journal) if any(k in r.get("looks", {}) for r in journal.get("rounds", []))]
    if not keys:
        return None
    unit, xlabel = _x_axis(journal)
    ncols = min(len(keys), 2)
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = figure(nrows, ncols, size=(5.2 * ncols, 3.6 * nrows + 0.6))
    for i, ax in enumerate(axes.flat):
        if i < len(keys):
            _panel(ax, journal, keys[i], unit, xlabel)
        else:
            ax.set_visible(False)
    chars = int(17 * fig.get_figwidth())  # about what one line of 7.5 pt text holds
    footnote(fig, [part for line in design_lines(journal)[:2] for part in wrap(line, chars).splitlines()])
    out_dir.mkdir(parents=True, exist_ok=True)
    return save(fig, out_dir / "adaptive_intervals.png")


def write_adaptive(root: Path | ObjectPath, journal: dict, plot: bool = True) -> list[Path | ObjectPath]:
    """``adaptive.md`` and ``adaptive.csv`` under ``root`` (``<storage>/<name>``) and, with
    ``plot``, ``plots/adaptive_intervals.png`` (when a round has a look); the paths written."""
    from harness.fileio import atomic_write_bytes  # here: fileio imports torch

    root = location(root)
    md, csv = root / "adaptive.md", root / "adaptive.csv"
    atomic_write_bytes(md, render_adaptive(journal, "md").encode("utf-8"))
    atomic_write_bytes(csv, rounds_frame(journal).to_csv(index=False, na_rep="n/a").encode("utf-8"))
    png = plot_rounds(journal, root / "plots") if plot else None
    return [md, csv] + ([png] if png else [])
