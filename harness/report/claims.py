"""The paper's three claims, checked on this experiment's results, beside the paper's figures.

1. An intermediate checkpoint distills a better student than the full (final) teacher: (a) the
   half-way checkpoint (``fraction:0.5``, else ``epoch:<final/2>``); (b) the intermediate
   checkpoint whose students have the best mean *validation* accuracy (one epoch for all
   trajectories, from ``every_checkpoint`` / ``epoch:E`` runs), reported on test.
2. A snapshot ensemble (checkpoints of one run) distills better than a full ensemble of as many
   independently trained teachers (``snapshot:[...]`` with K members vs ``full_ensemble:K``); the
   ensembles' own test accuracies are shown beside.
3. The MI-selected checkpoint T* (``selected:paper``) distills better than the full teacher.

Each comparison is paired (``harness.report.paired``): mean difference in pp with a 95% interval,
wins/ties/losses, the permutation p-value, Holm-corrected across the rows of the claims table,
and a verdict: **reproduced** (significantly better, as the paper says), **contradicted**
(significantly worse) or **inconclusive**. The paper's own figure comes from
``paper_figures.json`` (with the table it is from): the same pair's difference on CIFAR-100 when
this experiment is one of the paper's pairs, else the mean over the paper's pairs.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from functools import lru_cache
from pathlib import Path

from harness.report.paired import compare
from harness.report.stats import holm
from harness.report.tables import markdown_table, text_table
from harness.teacher_choices import choice_of, epoch_choice

logger = logging.getLogger(__name__)
FIGURES = Path(__file__).with_name("paper_figures.json")
REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
CLAIM_TEXT = {
    "1a": "1. intermediate (half-way) checkpoint > full teacher",
    "1b": "1. best intermediate checkpoint (on validation) > full teacher",
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


def _best_intermediate(entries: dict[str, dict], full: dict) -> dict | None:
    final = max(_epochs(full), default=None)
    inter = [
        b
        for c, b in entries.items()
        if choice_of(c).epoch is not None and final is not None and choice_of(c).epoch < final
    ]
    return max(inter, key=lambda b: (b["val_mean"], -choice_of(b["teacher_choice"]).epoch)) if inter else None


def _snapshots(entries: dict[str, dict]) -> list[tuple[dict, dict]]:
    """(snapshot entry, full_ensemble:K entry) with the same number of members."""
    out = []
    for c, b in sorted(entries.items()):
        ref = entries.get(f"full_ensemble:{b.get('members')}")
        if choice_of(c).kind == "snapshot" and ref is not None:
            out.append((b, ref))
    return out


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
            out += [
                (cid, e, full)
                for cid, e in (("1a", _halfway(entries, full)), ("1b", _best_intermediate(entries, full)))
                if e
            ]
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


def _claim_verdict(diff: float, p_holm: float, alpha: float) -> str:
    if p_holm == p_holm and p_holm < alpha and diff != 0:
        return REPRODUCED if diff > 0 else CONTRADICTED
    return INCONCLUSIVE


def check_claims(board: list[dict], alpha: float = 0.05) -> list[dict]:
    """One row per claim the board can answer, with the paired statistics and the verdict."""
    out = []
    for cid, e, ref in claim_pairs(board):
        c = compare(e, ref)
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
    for row, p in zip(out, holm([r["p_value"] for r in out])):
        row["p_holm"] = p
        row["verdict"] = _claim_verdict(row["diff_mean"], p, alpha)
    return out


# ---------------------------------------------------------------------------------------------
# rendering


def _pp(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:+.2f}"


def _acc(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.2f}"


def _pv(x: float) -> str:
    return "n/a" if x != x else (f"{x:.3f}" if x >= 0.001 else f"{x:.1e}")


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
    ("Δ pp [95% CI]", lambda r: f"{_pp(r['diff_mean'])} [{_pp(r['diff_ci_low'])}, {_pp(r['diff_ci_high'])}]", True),
    ("W/T/L", lambda r: f"{r['wins']}/{r['ties']}/{r['losses']}", True),
    ("n", lambda r: str(r["n"]), True),
    ("p", lambda r: _pv(r["p_value"]), True),
    ("p (Holm)", lambda r: _pv(r["p_holm"]), True),
    ("verdict", lambda r: r["verdict"], False),
    ("paper", lambda r: r["paper"], False),
]

CLAIMS_NOTE = (
    "Paired over runs matched by (student seed, teacher trajectory); Δ = choice - reference in percentage points "
    "with a 95% Student-t interval; p: two-sided paired permutation test (exact over all 2^n sign flips up to n = 16), "
    "Holm-corrected across the rows of this table. Verdict: reproduced = significantly better as the paper claims, "
    "contradicted = significantly worse, inconclusive = no detectable difference. Paper figures: "
    "harness/report/paper_figures.json (CIFAR-100; the same pair when this experiment is one, else the mean of the "
    "paper's pairs). Best intermediate: the epoch whose students have the best mean validation accuracy, "
    "reported on test."
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
    """The claims table as ``text``, ``markdown`` or ``csv``."""

    if fmt == "csv":
        return claims_csv(claims)
    if not claims:
        return ("# The paper's claims\n\n" if fmt == "markdown" else "") + EMPTY + "\n"
    headers, rows, numeric = claim_table(claims)
    if fmt == "markdown":
        return (
            "\n".join(
                ["# The paper's claims", "", CLAIMS_NOTE, "", markdown_table(headers, rows, numeric.__contains__)]
            )
            + "\n"
        )
    import textwrap

    return text_table(headers, rows, numeric.__contains__) + "\n\n" + "\n".join(textwrap.wrap(CLAIMS_NOTE, 100)) + "\n"


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
    "wins",
    "ties",
    "losses",
    "p_value",
    "p_holm",
    "verdict",
    "test",
    "paper",
)


def claims_csv(claims: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    pct = ("choice_acc", "ref_acc", "choice_teacher_acc", "ref_teacher_acc", "diff_mean", "diff_ci_low", "diff_ci_high")
    w.writerow([*CLAIM_CSV[:9], *(f"{k}_pct" for k in pct), *CLAIM_CSV[9:]])
    for r in claims:
        w.writerow(
            [
                *(r[k] for k in CLAIM_CSV[:9]),
                *("n/a" if r[k] is None or r[k] != r[k] else f"{100 * r[k]:.4f}" for k in pct),
                *(r[k] for k in CLAIM_CSV[9:]),
            ]
        )
    return buf.getvalue()
