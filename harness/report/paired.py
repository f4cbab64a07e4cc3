"""Matching runs across teacher choices and comparing leaderboard entries, trajectories as clusters.

Every leaderboard entry keeps ``pairs``: ``{(student seed, teacher seed): test accuracy}`` of the
runs behind it (the chosen hyperparameter setting; repeats of one pair are averaged). Two entries
are compared on the keys they share, so each difference is one student seed learning from the
same teacher trajectory under both choices; the differences are grouped by teacher trajectory
(the cluster, ``stats.clustered_test``). ``none`` has no teacher trajectory: against it runs are
matched by student seed, and clustered by the other side's trajectory.

``add_paired_stats(board, reference, alpha, margin)`` adds to every entry ``vs_ref`` and
``vs_none``: None when there is nothing to compare with, ``{"self": True}`` for the reference
itself, ``{"self": True, "same": True}`` for an entry whose runs learned from the same
checkpoints with the same settings as the reference's (one run, not a hypothesis), else the
``ClusteredTest`` fields plus ``ref``, ``p_holm`` / ``p_tost_holm`` (Holm across the tested
entries of the board: one family per column), ``answer`` (better / worse / equivalent /
undecided), ``more_trajectories`` and ``verdict`` (the answer in words).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable

from harness.report.stats import MARGIN, UNDECIDED, answer, answer_text, clustered_test, holm, trajectories_to_decide
from harness.teacher_choices import choice_of, epoch_choice

NONE = "none"  # the no-teacher choice: every entry is also compared with it (``vs_none``)
Pairs = dict[tuple, float]
# the fields of one paired comparison as the report's tables show them (leaderboard CSV, W&B table)
PAIRED_COLUMNS = (
    "ref",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "n",
    "students",
    "wins",
    "ties",
    "losses",
    "p_value",
    "p_holm",
    "p_tost",
    "p_tost_holm",
    "answer",
    "verdict",
    "diff_sd",
    "diff_sd_between",
    "diff_sd_within",
)
# column names where a comparison's key would clash with the entry's own (its ``n`` is seeds)
PAIRED_HEADERS = {"n": "n_trajectories", "students": "n_students"}


def pair_values(rows: Iterable[dict], key: str) -> Pairs:
    """``{(student seed, teacher seed): mean of row[key]}`` over the rows (repeats averaged)."""
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        v = r.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            acc[(r.get("seed"), r.get("teacher_seed"))].append(float(v))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def _by_seed(pairs: Pairs) -> dict:
    acc: dict = defaultdict(list)
    for (seed, _), v in pairs.items():
        acc[seed].append(v)
    return {k: sum(v) / len(v) for k, v in acc.items()}


def _key(k: tuple) -> tuple:
    return tuple(str(x) for x in k)


def cluster_diffs(a: dict, b: dict, key: str = "pairs") -> dict[Hashable, list[float]]:
    """``{teacher trajectory (seed): [a - b for each matched student]}`` on the runs both entries
    share; against ``none`` matched by student seed, clustered by the other side's trajectory."""
    pa, pb = a.get(key) or {}, b.get(key) or {}
    a_none, b_none = choice_of(a["teacher_choice"]).is_none, choice_of(b["teacher_choice"]).is_none
    out: dict[Hashable, list[float]] = defaultdict(list)
    if a_none and b_none:
        sa, sb = _by_seed(pa), _by_seed(pb)
        for s in sorted(set(sa) & set(sb), key=str):
            out[s].append(sa[s] - sb[s])
    elif a_none or b_none:
        teacher, alone, sign = (pb, _by_seed(pa), -1.0) if a_none else (pa, _by_seed(pb), 1.0)
        for seed, ts in sorted(teacher, key=_key):
            if seed in alone:
                out[ts].append(sign * (teacher[(seed, ts)] - alone[seed]))
    else:
        for k in sorted(set(pa) & set(pb), key=_key):
            out[k[1]].append(pa[k] - pb[k])
    return dict(out)


def compare(a: dict, b: dict, margin: float = MARGIN) -> dict | None:
    """``a`` vs ``b`` on matched runs, trajectories as clusters: the ``ClusteredTest`` fields,
    or None without a common pair."""
    diffs = cluster_diffs(a, b)
    return clustered_test(diffs, margin).as_dict() if diffs else None


def same_runs(a: dict, b: dict) -> bool:
    """Whether every run the two entries share learned from the same checkpoints with the same
    settings (e.g. ``epoch:<final>`` and ``full``): one run, not two hypotheses."""
    ca, cb = a.get("pair_checkpoints") or {}, b.get("pair_checkpoints") or {}
    shared = set(ca) & set(cb)
    settings = ("temperature", "kd_weight", "ensemble_reduce")
    return bool(shared) and all(ca[k] == cb[k] for k in shared) and all(a.get(s) == b.get(s) for s in settings)


def find_reference(entry: dict, board: list[dict], reference: str) -> dict | None:
    """The entry of choice ``reference`` with the same dataset and student, and the same teacher
    arch unless one side has no teacher (``none``: then the one reference entry, if unique)."""
    same = [
        b
        for b in board
        if b["teacher_choice"] == reference
        and b["dataset"] == entry["dataset"]
        and b["student_arch"] == entry["student_arch"]
    ]
    if choice_of(reference).is_none:
        return same[0] if same else None
    if entry["teacher_arch"] is None:
        return same[0] if len(same) == 1 else None
    return next((b for b in same if b["teacher_arch"] == entry["teacher_arch"]), None)


def _family(board: list[dict], reference: str, alpha: float, margin: float) -> list[dict | None]:
    """One comparison per entry against ``reference``; the tested ones are one Holm family."""
    out: list[dict | None] = []
    for b in board:
        ref = find_reference(b, board, reference)
        if ref is None:
            out.append(None)
        elif ref is b:
            out.append({"self": True, "ref": reference})
        elif same_runs(b, ref):
            out.append({"self": True, "same": True, "ref": reference})
        else:
            c = compare(b, ref, margin)
            out.append(None if c is None else {**c, "ref": reference})
    tested = [c for c in out if c is not None and not c.get("self")]
    decide(tested, alpha)
    return out


def decide(tested: list[dict], alpha: float) -> None:
    """Holm-correct a family of comparisons (difference and equivalence p separately) and add
    ``p_holm``, ``p_tost_holm``, ``answer``, ``more_trajectories`` and ``verdict``, in place.

    ``more_trajectories``: for an undecided comparison, about how many more trajectories would
    decide it at 80% power if the true difference were the observed one, at Holm's strictest
    level (alpha / family size)."""
    for c, p, q in zip(tested, holm([c["p_value"] for c in tested]), holm([c["p_tost"] for c in tested])):
        c["p_holm"], c["p_tost_holm"] = p, q
        c["answer"] = answer(c["diff_mean"], p, q, alpha)
        more = None
        if c["answer"] == UNDECIDED and c["n"] >= 2:
            need = trajectories_to_decide(c["diff_mean"], c["diff_sd"], c["margin"], alpha / len(tested))
            more = None if need is None else max(need - c["n"], 1)
        c["more_trajectories"] = more
        within = not math.isnan(q) and q < alpha
        c["verdict"] = answer_text(c["answer"], c["margin"], more, c["n"], within)


def add_paired_stats(board: list[dict], reference: str = "full", alpha: float = 0.05, margin: float = MARGIN) -> None:
    """Record ``vs_ref`` (against ``reference``) and ``vs_none`` on every entry, in place."""
    for b, c in zip(board, _family(board, reference, alpha, margin)):
        b["vs_ref"] = c
    for b, c in zip(board, _family(board, NONE, alpha, margin)):
        b["vs_none"] = c
    for b in board:
        b["reference"] = reference
        b["alpha"] = alpha
        b["margin"] = margin


def single_checkpoint_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows whose teacher resolved to exactly one checkpoint, relabelled ``epoch:E`` (with
    ``teacher_epoch`` and ``trajectory`` added).

    ``full`` and ``epoch:<last>`` (or ``fraction:0.5`` and ``epoch:<half>``) are the same run;
    such duplicates (same checkpoint, student, seed and hyperparameters) are counted once.
    """
    out, seen = [], set()
    for r in rows:
        ckpts = r.get("teacher_checkpoints") or []
        if not choice_of(r.get("teacher_choice", "")).is_none and len(ckpts) == 1 and ckpts[0].get("epoch") is not None:
            key = (
                ckpts[0].get("trajectory"),
                int(ckpts[0]["epoch"]),
                r.get("student_arch"),
                r.get("seed"),
                r.get("temperature"),
                r.get("kd_weight"),
                r.get("ensemble_reduce"),
            )
            if key in seen:
                continue
            seen.add(key)
            out.append(
                {
                    **r,
                    "teacher_choice": epoch_choice(ckpts[0]["epoch"]),
                    "teacher_epoch": int(ckpts[0]["epoch"]),
                    "trajectory": str(ckpts[0].get("trajectory")),
                }
            )
    return out
