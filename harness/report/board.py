"""Leaderboard entries: result rows -> one entry per (dataset, teacher, student, teacher choice).

Selection policy (DESIGN.md section 4): inside each group the hyperparameters
(temperature, kd_weight, ensemble_reduce) are chosen by the mean *validation* accuracy over
seeds; the test accuracy of that setting is only reported. Only settings that ran the most
seeds in their group compete, so a setting with one lucky seed cannot beat one with five.
The reported epoch is the student's final epoch by default (``reported="final"``) or the epoch
of its best validation accuracy (``reported="best_val"``); validation and test accuracy are
always taken at the same epoch.

A board is a plain ``list[dict]`` (accuracies as fractions in [0, 1]); ``harness.report.leaderboard``
renders it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from omegaconf import OmegaConf

from harness.config import ExperimentConfig
from harness.report.paired import add_paired_stats, pair_values
from harness.report.stats import MARGIN
from harness.scoring.scores_file import pick_of
from harness.teacher_choices import choice_of

REPORTED = {
    # reported: (validation key used for selection, test key that is reported, words)
    "final": ("final_val_acc", "final_test_acc", "the student's final epoch"),
    "best_val": ("best_val_acc", "test_acc_at_best_val", "the student's best-validation epoch"),
}
HPARAMS = ("temperature", "kd_weight", "ensemble_reduce")

# (dataset, teacher_arch, student_arch, teacher_choice) -> (T, kd_weight, reduce) -> rows
_Groups = dict[tuple, dict[tuple, list[dict]]]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _std(xs: list[float]) -> float | None:
    """Sample standard deviation (n - 1); None for a single value (shown as n/a)."""
    if len(xs) < 2:
        return None
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _short(trajectory: str) -> str:
    """``cnn1d_small-mnist1d-s2`` -> ``s2`` (the seed part of a trajectory name)."""
    return str(trajectory).rsplit("-", 1)[-1]


def _teacher_epochs(rows: list[dict]) -> str:
    """The teacher checkpoints the choice resolved to, per run, compactly: ``80`` when every run
    used the same epochs of its own trajectory (``full`` over paired teacher seeds), ``40+80`` for
    a snapshot, ``80+80`` for an ensemble of two trajectories, ``s0:20 s1:40 s2:20`` when the
    epochs differ between trajectories (e.g. ``selected:paper``)."""
    per_run: dict[str, str] = {}
    for r in rows:
        ckpts = r.get("teacher_checkpoints") or []
        if not ckpts:
            continue
        epochs = sorted((c.get("epoch") for c in ckpts), key=lambda e: (e is None, e))
        trajs = sorted({str(c.get("trajectory")) for c in ckpts})
        per_run[trajs[0] if len(trajs) == 1 else "+".join(trajs)] = "+".join(str(e) for e in epochs)
    labels = sorted(set(per_run.values()))
    if len(labels) <= 1:
        return labels[0] if labels else ""
    if all("+" not in t for t in per_run):
        return " ".join(f"{_short(t)}:{e}" for t, e in sorted(per_run.items()))
    return ", ".join(labels)


def student_hours(rows: list[dict]) -> float | None:
    """Student compute of ``rows`` in hours: the sum of their ``wall_time_s``, a packed run's row
    (which holds its whole pack's wall time) counting 1/``pack_size``; None when no row has one.
    Teachers and scoring are not counted."""
    walls = [(_num(r.get("wall_time_s")), _num(r.get("pack_size")) or 1.0) for r in rows]
    present = [w / max(p, 1.0) for w, p in walls if w is not None]
    return sum(present) / 3600 if present else None


def _members(rows: list[dict]) -> int:
    """The most teacher checkpoints any run of the entry learned from (1: a single teacher)."""
    return max((len(r.get("teacher_checkpoints") or []) for r in rows), default=0)


def _group_rows(rows: Iterable[dict], val_key: str, test_key: str) -> tuple[_Groups, int]:
    """Plan: sort the rows into groups (one per leaderboard line) and, inside each, settings
    (one per hyperparameter tuple); also count the rows left out for missing metrics."""
    groups: _Groups = defaultdict(lambda: defaultdict(list))
    skipped = 0
    for r in rows:
        if _num(r.get(val_key)) is None or _num(r.get(test_key)) is None:
            skipped += 1
            continue
        choice = str(r.get("teacher_choice", "?"))
        is_none = choice_of(choice).is_none
        gkey = (
            str(r.get("dataset", "?")),
            None if is_none else r.get("teacher_arch"),
            str(r.get("student_arch", "?")),
            choice,
        )
        hkey = (None, None, None) if is_none else tuple(r.get(h) for h in HPARAMS)
        groups[gkey][hkey].append(r)
    return groups, skipped


def _choose_setting(settings: dict[tuple, list[dict]], val_key: str) -> tuple[tuple, list[dict]]:
    """The hyperparameter setting of one group with the best mean validation accuracy, among
    the settings that ran the most seeds; ties go to the smaller T, then kd_weight."""
    most = max(len(v) for v in settings.values())
    candidates = {h: v for h, v in settings.items() if len(v) == most}

    def rank(item: tuple[tuple, list[dict]]) -> tuple:
        h, v = item
        return (
            -_mean([float(r[val_key]) for r in v]),
            tuple((x is None, x if isinstance(x, (int, float)) else str(x)) for x in h),
        )

    return sorted(candidates.items(), key=rank)[0]


def _present(chosen: list[dict], key: str) -> list[float]:
    """The numeric values of ``key`` in the rows (missing and NaN left out)."""
    return [v for v in (_num(r.get(key)) for r in chosen) if v is not None]


def _seed_key(seed: Any) -> tuple:
    """Sort key for seeds: numbers first (by value), then anything else (by text)."""
    return (not isinstance(seed, (int, float)), seed if isinstance(seed, (int, float)) else str(seed))


def _reported_epoch(reported: str, epochs: list[int], best_epochs: list[float]) -> str:
    """The reported epoch in words: ``final (10)`` or ``best val (mean 5.5)``."""
    if reported == "final":
        return f"final ({'/'.join(map(str, epochs))})" if epochs else "final"
    return f"best val (mean {_mean(best_epochs):.1f})" if best_epochs else "best val"


def _entry(gkey: tuple, settings: dict[tuple, list[dict]], reported: str, skipped: int) -> dict:
    """Compute one leaderboard line from the settings of its group (see ``build_leaderboard``)."""
    val_key, test_key, _ = REPORTED[reported]
    dataset, t_arch, s_arch, choice = gkey
    (t, w, red), chosen = _choose_setting(settings, val_key)
    tests = [float(r[test_key]) for r in chosen]
    vals = [float(r[val_key]) for r in chosen]
    t_test, t_val = _present(chosen, "teacher_test_acc"), _present(chosen, "teacher_val_acc")
    best_epochs = _present(chosen, "best_val_epoch")
    epochs = sorted({int(r["epochs"]) for r in chosen if _num(r.get("epochs")) is not None})
    return {
        "dataset": dataset,
        "teacher_arch": t_arch,
        "student_arch": s_arch,
        "teacher_choice": choice,
        "test_mean": _mean(tests),
        "test_std": _std(tests),
        "n": len(chosen),
        "seeds": sorted({r.get("seed") for r in chosen}, key=_seed_key),
        "val_mean": _mean(vals),
        "val_std": _std(vals),
        "teacher_test_acc": _mean(t_test) if t_test else None,
        "teacher_val_acc": _mean(t_val) if t_val else None,
        "temperature": t,
        "kd_weight": w,
        "ensemble_reduce": red,
        "settings_tried": len(settings),
        "teacher_epochs": _teacher_epochs(chosen),
        "epochs": epochs[0] if len(epochs) == 1 else (epochs or None),
        "reported": reported,
        "reported_epoch": _reported_epoch(reported, epochs, best_epochs),
        "best_val_epoch_mean": _mean(best_epochs) if best_epochs else None,
        "skipped_rows": skipped,
        "members": _members(chosen),
        "compute": student_hours(chosen),
        "checkpoint_epochs": sorted(
            {
                int(c["epoch"])
                for r in chosen
                for c in (r.get("teacher_checkpoints") or [])
                if c.get("epoch") is not None
            }
        ),
        "trajectories": sorted(
            {str(c.get("trajectory")) for r in chosen for c in (r.get("teacher_checkpoints") or [])}
        ),
        "pairs": pair_values(chosen, test_key),
        "val_pairs": pair_values(chosen, val_key),
        "pair_checkpoints": _pair_checkpoints(chosen),
        **_clusters(chosen, choice_of(choice).is_none),
    }


def _pair_checkpoints(rows: list[dict]) -> dict[tuple, tuple]:
    """``{(student seed, teacher seed): ((trajectory, epoch), ...)}``: what each run learned from."""
    return {
        (r.get("seed"), r.get("teacher_seed")): tuple(
            sorted((str(c.get("trajectory")), c.get("epoch") or 0) for c in (r.get("teacher_checkpoints") or []))
        )
        for r in rows
    }


def _clusters(rows: list[dict], is_none: bool) -> dict[str, Any]:
    """``trajectories_n`` (teacher trajectories the runs learned from: the effective n; None for
    ``none``) and ``students_per_trajectory`` (fewest, most)."""
    if is_none:
        return {"trajectories_n": None, "students_per_trajectory": None}
    per: dict[Any, set] = defaultdict(set)
    for r in rows:
        per[r.get("teacher_seed")].add(r.get("seed"))
    sizes = [len(v) for v in per.values()]
    return {"trajectories_n": len(per), "students_per_trajectory": (min(sizes), max(sizes)) if sizes else None}


def _record_deltas_and_sort(board: list[dict]) -> None:
    """Record: add ``delta_vs_none`` (against the no-teacher line of the same dataset and
    student, None without one) and sort by dataset, student, then test accuracy (best first)."""
    baseline = {
        (b["dataset"], b["student_arch"]): b["test_mean"] for b in board if choice_of(b["teacher_choice"]).is_none
    }
    for b in board:
        base = baseline.get((b["dataset"], b["student_arch"]))
        b["delta_vs_none"] = None if base is None else b["test_mean"] - base
    board.sort(
        key=lambda b: (b["dataset"], b["student_arch"], -b["test_mean"], str(b["teacher_arch"]), b["teacher_choice"])
    )


def build_leaderboard(
    rows: Iterable[dict],
    reported: str = "final",
    reference: str = "full",
    alpha: float = 0.05,
    margin: float = MARGIN,
    aliases: dict[str, list[str]] | None = None,
) -> list[dict]:
    """Aggregate result rows (``CheckpointStore.read_results()``) into leaderboard entries.

    Each entry: dataset, teacher_arch, student_arch, teacher_choice; ``test_mean``/``test_std``
    (student test accuracy over seeds at the reported epoch, std None when n == 1), ``n``,
    ``seeds``, ``val_mean``/``val_std`` (the selection criterion), ``teacher_test_acc`` /
    ``teacher_val_acc`` (mean accuracy of the resolved teacher or ensemble; None for ``none``),
    the chosen ``temperature``/``kd_weight``/``ensemble_reduce`` (None for ``none``),
    ``settings_tried``, ``teacher_epochs``, ``epochs``, ``reported_epoch`` (words),
    ``best_val_epoch_mean``, ``delta_vs_none``, ``reported``, ``members`` (checkpoints per run),
    ``trajectories``, ``pairs`` / ``val_pairs`` ({(seed, teacher seed): test / validation acc}),
    ``pair_checkpoints``, ``compute`` (student hours of the chosen runs, ``student_hours``),
    ``trajectories_n`` and ``students_per_trajectory`` (the effective n),
    ``aliases`` (other choices of the grid that are the same runs, e.g. ``epoch:80`` of ``full``)
    and the paired comparisons ``vs_ref`` (against ``reference``) and ``vs_none``
    (``harness.report.paired``; ``margin``: the equivalence margin as a fraction). Sorted by
    dataset, student, then mean test accuracy (best first).
    """
    if reported not in REPORTED:
        raise ValueError(f"reported={reported!r}: choose one of {', '.join(REPORTED)}")
    val_key, test_key, _ = REPORTED[reported]
    groups, skipped = _group_rows(rows, val_key, test_key)
    board = [_entry(gkey, settings, reported, skipped) for gkey, settings in groups.items()]
    _record_deltas_and_sort(board)
    for b in board:
        b["aliases"] = list((aliases or {}).get(b["teacher_choice"], []))
    add_paired_stats(board, reference, alpha, margin)
    return board


def mark_unstable(board: list[dict], scores: dict[str, dict]) -> None:
    """``unstable`` on ``selected:<selector>`` entries: True when the scorer flagged the pick of
    any of the entry's trajectories, False when it was checked and none was, None (shown as
    nothing) when the scores carry no such flag."""
    for b in board:
        selector = choice_of(b["teacher_choice"]).selector
        if selector is None:
            continue
        found = [pick_of(scores.get(t), selector) for t in b.get("trajectories", [])]
        flags = [p.unstable for p in found if p is not None and p.unstable is not None]
        b["unstable"] = any(flags) if flags else None


def board_for(
    cfg: ExperimentConfig, rows: list[dict], scores: dict[str, dict] | None = None, reported: str = "final"
) -> list[dict]:
    """The leaderboard of ``rows`` with the config's reference and alpha, unstable picks marked."""
    reference = str(
        OmegaConf.select(cfg, "report.reference", default="full")
    )  # a bare {storage, name} config works too
    board = build_leaderboard(
        rows,
        reported=reported,
        reference=reference,
        alpha=float(OmegaConf.select(cfg, "report.alpha", default=0.05)),
        margin=float(OmegaConf.select(cfg, "report.equivalence_margin", default=100 * MARGIN)) / 100,
        aliases=grid_aliases(cfg),
    )
    mark_unstable(board, scores or {})
    return board


def rows_of_config(cfg: ExperimentConfig, rows: list[dict]) -> tuple[list[dict], int]:
    """The rows this config's recipe trained, and how many others: a row counts if its recorded
    run fields hash (``RunResolver.run_id_of``) to its own run id under ``cfg``. That keeps every
    honest row of this config (any teacher choice, T, weight or seed: its sweeps and its ``ckd
    distill`` runs) and leaves out rows of another recipe stored under the same name and rows
    planted with an invented run id."""
    from harness.runs import RunResolver  # here: runs imports torch, the report tables need not

    return RunResolver(cfg).counted(rows)  # the report's and ``ckd plot``'s rows


def grid_aliases(cfg: ExperimentConfig) -> dict[str, list[str]]:
    """``{choice: [other choices of the grid that are the same runs]}`` (``full``: ``epoch:80``),
    from the config's checkpoint schedule; {} for a config without a sweep section."""
    if OmegaConf.select(cfg, "sweep.teacher_choices", default=None) is None:
        return {}
    from harness.sweep import static_aliases  # harness.sweep imports torch; the report tables need not

    out: dict[str, list[str]] = {}
    for arch in list(cfg.sweep.teacher_archs) or list(cfg.teacher.archs):
        for kept, dropped in static_aliases(cfg, arch).items():
            out.setdefault(kept, [])
            out[kept] += [d for d in dropped if d not in out[kept]]
    return out
