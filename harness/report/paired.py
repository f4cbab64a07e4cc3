"""Matching runs across teacher choices and comparing leaderboard entries pairwise.

Every leaderboard entry keeps ``pairs``: ``{(student seed, teacher seed): test accuracy}`` of the
runs behind it (the chosen hyperparameter setting; repeats of one pair are averaged). Two entries
are compared on the keys they share, so each difference is one student seed learning from the
same teacher trajectory under both choices. ``none`` has no teacher trajectory: against it runs
are matched by student seed alone.

``add_paired_stats(board, reference, alpha)`` adds to every entry ``vs_ref`` and ``vs_none``:
None when there is nothing to compare with, ``{"self": True}`` for the reference itself, else the
``PairedTest`` fields plus ``ref``, ``p_holm`` (Holm across the entries of the board) and
``verdict``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from harness.report.stats import holm, paired_test, verdict
from harness.teacher_choices import choice_of, epoch_choice

NONE = "none"  # the no-teacher choice: every entry is also compared with it (``vs_none``)
Pairs = dict[tuple, float]
# the fields of one paired comparison as the report's tables show them (leaderboard CSV, W&B table)
PAIRED_COLUMNS = (
    "ref",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "wins",
    "ties",
    "losses",
    "p_value",
    "p_holm",
    "verdict",
)


def pair_values(rows: Iterable[dict], key: str) -> Pairs:
    """``{(student seed, teacher seed): mean of row[key]}`` over the rows (repeats averaged)."""
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        v = r.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            acc[(r.get("seed"), r.get("teacher_seed"))].append(float(v))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def _by_seed(pairs: Pairs) -> Pairs:
    acc: dict[tuple, list[float]] = defaultdict(list)
    for (seed, _), v in pairs.items():
        acc[(seed, None)].append(v)
    return {k: sum(v) / len(v) for k, v in acc.items()}


def matched(a: dict, b: dict) -> tuple[list[tuple], list[float], list[float]]:
    """(keys, values of a, values of b) on the pairs both entries share (sorted keys)."""
    pa, pb = a.get("pairs") or {}, b.get("pairs") or {}
    if choice_of(a["teacher_choice"]).is_none or choice_of(b["teacher_choice"]).is_none:
        pa, pb = _by_seed(pa), _by_seed(pb)
    keys = sorted(set(pa) & set(pb), key=lambda k: tuple(str(x) for x in k))
    return keys, [pa[k] for k in keys], [pb[k] for k in keys]


def compare(a: dict, b: dict) -> dict | None:
    """``a`` vs ``b`` on matched runs: the ``PairedTest`` fields, or None without a common pair."""
    keys, xa, xb = matched(a, b)
    if not keys:
        return None
    return paired_test(xa, xb).as_dict()


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


def _family(board: list[dict], reference: str, alpha: float) -> list[dict | None]:
    """One comparison per entry against ``reference``, Holm-corrected across the board."""
    out: list[dict | None] = []
    for b in board:
        ref = find_reference(b, board, reference)
        if ref is None:
            out.append(None)
        elif ref is b:
            out.append({"self": True, "ref": reference})
        else:
            c = compare(b, ref)
            out.append(None if c is None else {**c, "ref": reference})
    tested = [c for c in out if c is not None and not c.get("self")]
    for c, p in zip(tested, holm([c["p_value"] for c in tested])):
        c["p_holm"] = p
        c["verdict"] = verdict(c["diff_mean"], p, alpha)
    return out


def add_paired_stats(board: list[dict], reference: str = "full", alpha: float = 0.05) -> None:
    """Record ``vs_ref`` (against ``reference``) and ``vs_none`` on every entry, in place."""
    for b, c in zip(board, _family(board, reference, alpha)):
        b["vs_ref"] = c
    for b, c in zip(board, _family(board, NONE, alpha)):
        b["vs_none"] = c
    for b in board:
        b["reference"] = reference
        b["alpha"] = alpha


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
