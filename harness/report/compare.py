"""``ckd compare A B``: two experiments' leaderboards side by side, with paired differences.

A and B are each a config (YAML file, with ``--a`` / ``--b`` overrides) or an experiment folder
(``<storage>/<name>``, holding the results). Per leaderboard row (student, teacher arch, teacher
choice) it shows each side's accuracy and n (``board.board_for``) and, where runs MATCH (same
teacher arch, student arch, choice, T, kd_weight, student seed and teacher seed), the paired
difference B - A over the matched runs, clustered by teacher trajectory (``stats.clustered_test``;
runs without a teacher: each student seed its own cluster) with its interval.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import OmegaConf

from harness.fileio import atomic_write_bytes
from harness.objects import location
from harness.report.board import REPORTED, board_for, rows_of_config
from harness.report.console import fit_table
from harness.report.leaderboard import is_numeric_header, pct, signed_pct
from harness.report.stats import clustered_test
from harness.store import CheckpointStore, StoreError

ROW_KEY = ("student_arch", "teacher_arch", "teacher_choice")
MATCH_KEY = ("teacher_arch", "student_arch", "teacher_choice", "temperature", "kd_weight", "seed", "teacher_seed")
HEADERS = ["student", "teacher", "choice", "A acc", "A n", "B acc", "B n", "B-A", "95% CI", "matched", "traj"]


@dataclass(frozen=True)
class Side:
    """One experiment: its label, config (a bare ``{storage, name}`` for a folder) and rows."""

    label: str
    cfg: object
    rows: list[dict]


def load_side(spec: str, overrides: Sequence[str] = ()) -> Side:
    """A config path (+ overrides: its rows of this recipe, ``rows_of_config``) or an experiment
    folder (all its rows; a folder or an object-store prefix, ``s3://bucket/prefix/name``); StoreError
    naming the fix when there is no experiment."""
    path = location(spec)
    if path.is_dir():
        if overrides:
            raise StoreError(f"{spec} is an experiment folder: overrides ({' '.join(overrides)}) apply to configs")
        cfg = OmegaConf.create({"storage": str(path.parent), "name": path.name})
        store = CheckpointStore(path.parent, path.name)
    else:
        from harness.config_loading import load_config

        cfg = load_config(spec, list(overrides))
        store = CheckpointStore(cfg.storage, cfg.name)
    if not store.root.is_dir():
        raise StoreError(f"no experiment at {store.root}; run `ckd run CONFIG` first")
    rows = store.read_results()
    if not path.is_dir():
        rows, _ = rows_of_config(cfg, rows)
    return Side(str(store.root), cfg, rows)


def _matched_diffs(a: list[dict], b: list[dict], test_key: str) -> dict[str, dict[str, list[float]]]:
    """``{row key: {cluster: [B - A per matched run]}}``: runs matched on ``MATCH_KEY`` (repeats
    averaged), clustered by teacher trajectory (teacher arch and seed), no teacher: by student seed."""

    def by_point(rows: list[dict]) -> dict[tuple, float]:
        acc: dict[tuple, list[float]] = defaultdict(list)
        for r in rows:
            v = r.get(test_key)
            if isinstance(v, (int, float)) and not math.isnan(v):
                acc[tuple(r.get(k) for k in MATCH_KEY)].append(float(v))
        return {k: sum(v) / len(v) for k, v in acc.items()}

    pa, pb = by_point(a), by_point(b)
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for point in sorted(set(pa) & set(pb), key=str):
        m = dict(zip(MATCH_KEY, point))
        cluster = f"s{m['seed']}" if m["teacher_seed"] is None else f"{m['teacher_arch']}-s{m['teacher_seed']}"
        out[str(tuple(m[k] for k in ROW_KEY))][cluster].append(pb[point] - pa[point])
    return out


def compare_boards(a: Side, b: Side, reported: str = "final") -> list[dict]:
    """One record per leaderboard row of either side: accuracies, n, and the paired B - A."""
    if reported not in REPORTED:
        raise ValueError(f"--metric {reported!r}: choose one of {', '.join(REPORTED)}")
    boards = [
        {str(tuple(e[k] for k in ROW_KEY)): e for e in board_for(s.cfg, s.rows, reported=reported)} for s in (a, b)
    ]
    diffs = _matched_diffs(a.rows, b.rows, REPORTED[reported][1])
    out = []
    for key in sorted(set(boards[0]) | set(boards[1])):
        ea, eb = boards[0].get(key), boards[1].get(key)
        e = ea or eb
        rec = {k: e[k] for k in ROW_KEY}
        rec.update(a_acc=ea and ea["test_mean"], a_n=ea["n"] if ea else 0)
        rec.update(b_acc=eb and eb["test_mean"], b_n=eb["n"] if eb else 0)
        test = clustered_test(diffs[key]) if diffs.get(key) else None
        rec.update(
            diff=test and test.diff_mean,
            ci_low=test and test.diff_ci_low,
            ci_high=test and test.diff_ci_high,
            matched=test.students if test else 0,
            trajectories=test.n if test else 0,
        )
        out.append(rec)
    return out


def _ci(r: dict) -> str:
    if r["diff"] is None:
        return "no matching runs"
    if r["ci_low"] is None or math.isnan(r["ci_low"]):
        return "n/a (1 cluster)" if r["trajectories"] < 2 else "n/a"
    return f"[{signed_pct(r['ci_low'])}, {signed_pct(r['ci_high'])}]"


def _cells(r: dict) -> list[str]:
    return [
        str(r["student_arch"]),
        str(r["teacher_arch"] or "-"),
        str(r["teacher_choice"]),
        pct(r["a_acc"]) if r["a_acc"] is not None else "-",
        str(r["a_n"] or 0),
        pct(r["b_acc"]) if r["b_acc"] is not None else "-",
        str(r["b_n"] or 0),
        signed_pct(r["diff"]) if r["diff"] is not None else "-",
        _ci(r),
        str(r["matched"]),
        str(r["trajectories"]),
    ]


def render_console(records: list[dict], a: Side, b: Side, reported: str, width: int = 120) -> str:
    """The side-by-side table (<= ``width`` columns), headed by what A and B are."""
    numeric = {"A acc", "A n", "B acc", "B n", "B-A", "matched", "traj"}
    table = fit_table(HEADERS, [_cells(r) for r in records], lambda h: h in numeric or is_numeric_header(h), (), width)
    head = [f"A: {a.label} ({len(a.rows)} rows)", f"B: {b.label} ({len(b.rows)} rows)"]
    note = f"test accuracy at the {reported} epoch (%); B-A: paired over matched runs, 95% CI over trajectories"
    return "\n".join([*(h[:width] for h in head), note[:width], "", table])


def render_csv(records: list[dict]) -> str:
    """Full-precision CSV (fractions; empty cells where a side has no value)."""
    keys = list(records[0]) if records else [*ROW_KEY]
    buf = io.StringIO()
    w = csv.DictWriter(buf, keys, lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: "" if r[k] is None or (isinstance(r[k], float) and math.isnan(r[k])) else r[k] for k in keys})
    return buf.getvalue()


def render_markdown(records: list[dict], a: Side, b: Side, reported: str) -> str:
    lines = [f"# Compare\n\nA: `{a.label}`  \nB: `{b.label}`  \nreported: {reported}\n"]
    lines.append("| " + " | ".join(HEADERS) + " |")
    lines.append("|" + "|".join("---" for _ in HEADERS) + "|")
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in records]
    return "\n".join(lines) + "\n"


def run_compare(
    a_spec: str, b_spec: str, a_over: Sequence[str], b_over: Sequence[str], metric: str | None, out: str
) -> str:
    """``ckd compare``: load both sides, write compare.{csv,md} into ``out`` (a folder or an
    object-store prefix); the console table."""
    a, b = load_side(a_spec, a_over), load_side(b_spec, b_over)
    reported = metric or str(OmegaConf.select(a.cfg, "report.reported", default="final"))
    records = compare_boards(a, b, reported)
    folder = location(out)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "compare.csv", render_csv(records).encode())
    atomic_write_bytes(folder / "compare.md", render_markdown(records, a, b, reported).encode())
    return render_console(records, a, b, reported) + f"\n\nwrote {folder / 'compare.csv'} and compare.md"
