"""The paper's three claims, checked on this experiment's results, beside the paper's figures.

1. An intermediate checkpoint distills a better student than the full (final) teacher: (a) the
   half-way checkpoint (``fraction:0.5``, else ``epoch:<final/2>``); (b) the best intermediate
   checkpoint, cross-fitted so that the choice and the test never use the same students: for
   each teacher trajectory, the epoch whose students of the next (T - 1) // 2 other
   trajectories have the best mean validation accuracy, compared with ``full`` on this
   trajectory's students (``best_intermediate_crossfit``; from
   ``every_checkpoint`` / ``epoch:E`` runs). Choosing and testing on the same students would
   favour the pick by its own noise (a winner's curse of the size of the paper's effects).
2. A snapshot ensemble (checkpoints of one run) distills better than a full ensemble of as many
   independently trained teachers (``snapshot:[...]`` with K members vs ``full_ensemble:K``); the
   ensembles' own test accuracies are shown beside.
3. The MI-selected checkpoint T* (``selected:paper``) distills better than the full teacher.

Each comparison is paired and clustered by teacher trajectory (``harness.report.paired``,
``stats.clustered_test``): mean difference in pp with a 95% interval over the trajectory means,
wins/ties/losses of the trajectories, the t-test p and the TOST p, Holm-corrected across the
tested rows of the claims table (one family), and one of four answers: **better** (the claim is
reproduced), **worse** (contradicted), **equivalent within ±margin** (not reproduced) or
**undecided** (with about how many more trajectories would decide it). A claim whose two sides
are the same runs (e.g. ``selected:paper`` picked the final checkpoint everywhere) is not tested.
The paper's own figure comes from ``paper_figures.json`` (with the table it is from): the same
pair's difference on CIFAR-100 when this experiment is one of the paper's pairs, else the mean
over the paper's pairs.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from harness.report.paired import compare, decide, same_runs
from harness.report.stats import BETTER, EQUIVALENT, MARGIN, WORSE, clustered_test
from harness.report.tables import markdown_table, text_table, wrap
from harness.teacher_choices import choice_of, epoch_choice

logger = logging.getLogger(__name__)
FIGURES = Path(__file__).with_name("paper_figures.json")
CLAIM_TEXT = {
    "1a": "1. intermediate (half-way) checkpoint > full teacher",
    "1b": "1. best intermediate checkpoint (cross-fit on validation) > full teacher",
    "2": "2. snapshot ensemble > full ensemble (same size)",
    "3": "3. T* (selected:paper) > full teacher",
}


@lru_cache(maxsize=1)
def paper_figures() -> dict:
    """The paper's figures (``harness/report/paper_figures.json``)."""
    return json.loads(FIGURES.read_text())


def _epochs(entry: dict) -> list[int]:
    return list(entry.get("checkpoint_epochs") or [])


def _halfway(entries: dict[str, dict], full: dict) -> dict | None:
    if "fraction:0.5" in entries:
        return entries["fraction:0.5"]
    final = max(_epochs(full), default=None)
    return None if final is None else entries.get(epoch_choice(final // 2))


def _intermediate(entries: dict[str, dict], full: dict) -> dict[int, dict]:
    """``{epoch: entry}`` of the single-checkpoint entries before the final epoch (an entry
    trained once for several names, ``fraction:0.5 (= epoch:40)``, counts under its epoch)."""
    final = max(_epochs(full), default=None)
    out = {}
    for c, b in entries.items():
        for name in (c, *b.get("aliases", [])):
            epoch = choice_of(name).epoch
            if final is not None and epoch is not None and epoch < final:
                out.setdefault(epoch, b)
    return out


def _mean_val_of(entry: dict, trajectories: set) -> float:
    """Mean validation accuracy of the entry's students that learned from ``trajectories``."""
    vals = [v for (_, ts), v in (entry.get("val_pairs") or {}).items() if ts in trajectories]
    return sum(vals) / len(vals) if vals else -math.inf


def best_intermediate_crossfit(entries: dict[str, dict], full: dict) -> tuple[dict, dict] | None:
    """Claim 1b without the winner's curse: trajectory i's intermediate epoch is the one whose
    students of the *next* k = (T - 1) // 2 trajectories (in sorted order, wrapping around) have
    the best mean validation accuracy (earliest on ties), and it is tested on trajectory i's own
    students. Choosing on other trajectories makes each difference unbiased; choosing on the
    next k only (not on all others) makes the differences uncorrelated: two trajectories never
    both choose on each other's students, so the t-test over them keeps its level (with
    leave-one-out selection they correlate and it rejected 7% of true nulls at 5%).
    Returns ``({trajectory: [differences to full]}, {trajectory: chosen epoch})``; None with
    fewer than three trajectories or no intermediate checkpoint."""
    inter = _intermediate(entries, full)
    trajectories = sorted({ts for _, ts in (full.get("pairs") or {})}, key=str)
    if not inter or len(trajectories) < 3:
        return None
    k = (len(trajectories) - 1) // 2
    diffs, chosen = {}, {}
    for i, t in enumerate(trajectories):
        others = {trajectories[(i + j) % len(trajectories)] for j in range(1, k + 1)}
        epoch = max(sorted(inter), key=lambda e: (_mean_val_of(inter[e], others), -e))
        chosen[t] = epoch
        mine, ref = inter[epoch].get("pairs") or {}, full.get("pairs") or {}
        d = [mine[key] - ref[key] for key in sorted(set(mine) & set(ref), key=str) if key[1] == t]
        if d:
            diffs[t] = d
    return (diffs, chosen) if diffs else None


def _snapshots(entries: dict[str, dict]) -> list[tuple[dict, dict]]:
    """(snapshot entry, full_ensemble:K entry) with the same number of members."""
    out = []
    for c, b in sorted(entries.items()):
        ref = entries.get(f"full_ensemble:{b.get('members')}")
        if choice_of(c).kind == "snapshot" and ref is not None:
            out.append((b, ref))
    return out


def _crossfit_entry(entries: dict[str, dict], full: dict) -> dict | None:
    """Claim 1b's side as a leaderboard-like entry: the cross-fitted choice per trajectory, its
    differences to ``full`` (``crossfit``) and the mean test accuracy of the students behind it."""
    found = best_intermediate_crossfit(entries, full)
    if found is None:
        return None
    diffs, chosen = found
    inter = _intermediate(entries, full)
    tests = [v for t, e in chosen.items() for (_, ts), v in (inter[e].get("pairs") or {}).items() if ts == t]
    return {
        **{k: full[k] for k in ("dataset", "teacher_arch", "student_arch")},
        "teacher_choice": "best intermediate (cross-fit)",
        "teacher_epochs": " ".join(f"s{t}:{e}" for t, e in chosen.items()),
        "test_mean": sum(tests) / len(tests) if tests else math.nan,
        "teacher_test_acc": None,
        "crossfit": diffs,
    }


def claim_pairs(board: list[dict]) -> list[tuple[str, dict, dict]]:
    """(claim id, entry, reference entry) for every claim the board holds what it needs."""
    groups: dict[tuple, dict[str, dict]] = {}
    for b in board:
        if b["teacher_arch"] is not None:
            groups.setdefault((b["dataset"], b["teacher_arch"], b["student_arch"]), {})[b["teacher_choice"]] = b
    out = []
    for _, entries in sorted(groups.items()):
        full = entries.get("full")
        if full is not None:
            half = _halfway(entries, full)
            out += [("1a", half, full)] if half else []
            best = _crossfit_entry(entries, full)
            out += [("1b", best, full)] if best else []
        out += [("2", s, f) for s, f in _snapshots(entries)]
        if full is not None and "selected:paper" in entries:
            out.append(("3", entries["selected:paper"], full))
    return out


def paper_figure(cid: str, dataset: str, teacher: str, student: str) -> str:
    """The paper's difference for a claim, in words with its table."""
    f = paper_figures()
    if cid in ("1a", "1b"):
        key, t = ("halfway" if cid == "1a" else "best"), f["table1"]
        return _pair_figure(t, dataset, teacher, student, key, "full")
    if cid == "2":
        return _pair_figure(f["table2"], dataset, teacher, student, "snapshot", "full_ensemble")
    m = f["table3"]["mean_over_pairs"]
    return (
        f"{m['selected'] - m['full']:+.2f} pp ({m['selected']:.2f} vs {m['full']:.2f}, "
        f"mean of 4 CIFAR-100 pairs, {f['table3']['table']})"
    )


def _pair_figure(t: dict, dataset: str, teacher: str, student: str, key: str, ref: str) -> str:
    same = [p for p in t["pairs"] if dataset == "cifar100" and p["teacher"] == teacher and p["student"] == student]
    if same:
        p = same[0]
        return (
            f"{p[key] - p[ref]:+.2f} pp ({p[key]:.2f} vs {p[ref]:.2f}, CIFAR-100 {teacher} -> {student}, {t['table']})"
        )
    diffs = [p[key] - p[ref] for p in t["pairs"]]
    return (
        f"{sum(diffs) / len(diffs):+.2f} pp (mean of {len(diffs)} CIFAR-100 pairs, "
        f"range {min(diffs):+.2f}..{max(diffs):+.2f}, "
        f"{t['table']})"
    )


CLAIM_WORDS = {BETTER: "reproduced", WORSE: "contradicted", EQUIVALENT: "not reproduced"}


def _claim_test(e: dict, ref: dict, margin: float) -> dict | None:
    """The clustered comparison of a claim's two sides; ``{"same": True}`` for the same runs."""
    if "crossfit" in e:
        return clustered_test(e["crossfit"], margin).as_dict()
    if same_runs(e, ref):
        return {"same": True}
    return compare(e, ref, margin)


def check_claims(board: list[dict], alpha: float = 0.05, margin: float | None = None) -> list[dict]:
    """One row per claim the board can answer, with the clustered statistics and the answer;
    the tested rows are one Holm family (``paired.decide``). ``margin``: the equivalence margin
    (a fraction), by default the board's."""
    margin = (board[0].get("margin", MARGIN) if board else MARGIN) if margin is None else margin
    out = []
    for cid, e, ref in claim_pairs(board):
        c = _claim_test(e, ref, margin)
        if c is None:
            continue
        out.append(
            {
                "claim": cid,
                "text": CLAIM_TEXT[cid],
                "dataset": e["dataset"],
                "teacher_arch": e["teacher_arch"],
                "student_arch": e["student_arch"],
                "choice": e["teacher_choice"],
                "ref": ref["teacher_choice"],
                "choice_epochs": e.get("teacher_epochs"),
                "ref_epochs": ref.get("teacher_epochs"),
                "choice_acc": e["test_mean"],
                "ref_acc": ref["test_mean"],
                "choice_teacher_acc": e.get("teacher_test_acc"),
                "ref_teacher_acc": ref.get("teacher_test_acc"),
                **c,
                "paper": paper_figure(cid, e["dataset"], e["teacher_arch"], e["student_arch"]),
            }
        )
    tested = [r for r in out if not r.get("same")]
    decide(tested, alpha)
    for r in out:
        if r.get("same"):
            r.update(answer=None, verdict=f"same runs as {r['ref']}: not tested")
        elif r["answer"] in CLAIM_WORDS:
            r["verdict"] = f"{r['verdict']}: {CLAIM_WORDS[r['answer']]}"
    return out


# ---------------------------------------------------------------------------------------------
# rendering


def _pp(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:+.2f}"


def _acc(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.2f}"


def _pv(x: float | None) -> str:
    return "n/a" if x is None or x != x else (f"{x:.3f}" if x >= 0.001 else f"{x:.1e}")


def _n(r: dict) -> str:
    """``5×2``: trajectories × students per trajectory (``5×1-3`` when uneven)."""
    if r.get("n") is None:
        return "-"
    lo, hi = r["per_cluster_min"], r["per_cluster_max"]
    return f"{r['n']}×{lo if lo == hi else f'{lo}-{hi}'}"


def _get(r: dict, key: str, fmt: Callable[[float | None], str]) -> str:
    return "-" if r.get("same") else fmt(r.get(key))


CLAIM_COLUMNS = [  # (header, cell, numeric)
    ("claim", lambda r: r["text"], False),
    ("setting", lambda r: f"{r['dataset']}: {r['teacher_arch']} -> {r['student_arch']}", False),
    (
        "choice (epochs) vs reference (epochs)",
        lambda r: f"{r['choice']} ({r['choice_epochs'] or '-'}) vs {r['ref']} ({r['ref_epochs'] or '-'})",
        False,
    ),
    ("student acc %", lambda r: f"{_acc(r['choice_acc'])} vs {_acc(r['ref_acc'])}", True),
    ("teacher acc %", lambda r: f"{_acc(r['choice_teacher_acc'])} vs {_acc(r['ref_teacher_acc'])}", True),
    (
        "Δ pp [95% CI]",
        lambda r: f"{_pp(r.get('diff_mean'))} [{_pp(r.get('diff_ci_low'))}, {_pp(r.get('diff_ci_high'))}]",
        True,
    ),
    ("W/T/L traj", lambda r: "-" if r.get("same") else f"{r['wins']}/{r['ties']}/{r['losses']}", True),
    ("n traj×stud", _n, True),
    ("p", lambda r: _get(r, "p_value", _pv), True),
    ("p (Holm)", lambda r: _get(r, "p_holm", _pv), True),
    ("p TOST (Holm)", lambda r: _get(r, "p_tost_holm", _pv), True),
    ("answer", lambda r: r["verdict"], False),
    ("paper", lambda r: r["paper"], False),
]


def claims_note(claims: list[dict]) -> str:
    """The claims table's footer: the statistics, the family and the margin in words."""
    tested = [r for r in claims if not r.get("same")]
    margin = 100 * (tested[0]["margin"] if tested else MARGIN)
    return (
        "Runs matched by (student seed, teacher trajectory); the differences are averaged per trajectory (the unit "
        "of replication; n = trajectories × students per trajectory) and Δ = choice - reference is the mean over "
        "trajectories in percentage points with a 95% Student-t interval; W/T/L counts trajectories; p: two-sided "
        f"t-test of the trajectory means; p TOST: two one-sided t-tests at ±{margin:.2f} pp "
        f"(report.equivalence_margin). Multiplicity: one Holm family, the {len(tested)} tested rows of this table. "
        "Answers: better = the claim is reproduced, worse = contradicted, equivalent within the margin = not "
        "reproduced, undecided = neither yet (with about how many more trajectories would decide it at 80% power "
        "if the true difference were the observed one). Best intermediate (claim 1b) is cross-fitted: each "
        "trajectory's epoch is chosen by the validation accuracy of the students of the next (T-1)//2 trajectories "
        "(sorted, wrapping around) and tested on its own students (epochs per trajectory shown). Paper figures: "
        "harness/report/paper_figures.json (CIFAR-100; the same pair when this experiment is one, else the mean of "
        "the paper's pairs)."
    )


def claim_table(claims: list[dict]) -> tuple[list[str], list[list[str]], set[str]]:
    return (
        [h for h, _, _ in CLAIM_COLUMNS],
        [[f(r) for _, f, _ in CLAIM_COLUMNS] for r in claims],
        {h for h, _, num in CLAIM_COLUMNS if num},
    )


EMPTY = (
    "No claim can be checked: the results need `full` with `fraction:0.5` or `epoch:E` (claim 1), "
    "`snapshot:[...]` with `full_ensemble:K` of the same size (claim 2) or `selected:paper` (claim 3)."
)


def render_claims(claims: list[dict], fmt: str = "text") -> str:
    """The claims table as ``text`` (every column), ``markdown`` or ``csv`` (for a terminal:
    ``claims_console.render_claims_console``)."""

    if fmt == "csv":
        return claims_csv(claims)
    if not claims:
        return ("# The paper's claims\n\n" if fmt == "markdown" else "") + EMPTY + "\n"
    headers, rows, numeric = claim_table(claims)
    if fmt == "markdown":
        return (
            "\n".join(
                [
                    "# The paper's claims",
                    "",
                    markdown_table(headers, rows, numeric.__contains__),
                    "",
                    f"_{claims_note(claims)}_",
                ]
            )
            + "\n"
        )
    return text_table(headers, rows, numeric.__contains__) + "\n\n" + wrap(claims_note(claims)) + "\n"


CLAIM_CSV = (
    "claim",
    "text",
    "dataset",
    "teacher_arch",
    "student_arch",
    "choice",
    "ref",
    "choice_epochs",
    "ref_epochs",
    "n",
    "students",
    "per_cluster_min",
    "per_cluster_max",
    "wins",
    "ties",
    "losses",
    "p_value",
    "p_holm",
    "p_tost",
    "p_tost_holm",
    "answer",
    "more_trajectories",
    "verdict",
    "test",
    "paper",
)
CLAIM_PCT = (
    "choice_acc",
    "ref_acc",
    "choice_teacher_acc",
    "ref_teacher_acc",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "margin",
)


def _csv_cell(r: dict, key: str) -> object:
    """One CSV cell with the one NA marker (None, NaN and '' are ``n/a``)."""
    v = r.get(key)
    return "n/a" if v is None or v != v or v == "" else v


def claims_csv(claims: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*CLAIM_CSV[:9], *(f"{k}_pct" for k in CLAIM_PCT), *CLAIM_CSV[9:]])
    for r in claims:
        w.writerow(
            [
                *(_csv_cell(r, k) for k in CLAIM_CSV[:9]),
                *("n/a" if r.get(k) is None or r[k] != r[k] else f"{100 * r[k]:.4f}" for k in CLAIM_PCT),
                *(_csv_cell(r, k) for k in CLAIM_CSV[9:]),
            ]
        )
    return buf.getvalue()
