"""What one round of an adaptive sweep is: its config, its comparisons, the compute it took.

An adaptive sweep (``sweep.until=decided``, ``harness/adaptive.py``) grows a design ``(n, m)``:
``n`` teacher trajectories, each teaching ``m`` student seeds under every teacher choice of the grid.
Round ``r``'s config is the user's config with ``teacher.seeds`` = the first ``n`` of
``teacher_seeds_for`` and ``sweep.seeds`` = ``student_seeds_for(n, m)``; every stage is
idempotent, so a round trains only what the earlier rounds did not.

Seeds are stable across rounds: student ``j`` of trajectory index ``t`` always has seed
``t + STRIDE * j`` and is listed at index ``j * n + t``, so ``sweep.teacher_seeds=paired`` (index
``i`` learns from ``teacher.seeds[i % n]``) keeps it on trajectory ``t`` whatever ``n`` is. New
trajectories continue the config's seeds (``[0, 1, 2]`` -> 3, 4, ...). (``full_ensemble:K`` pairs a
trajectory with the next ones, wrapping around: the last trajectory of a round gets new partners in
the next round, so its ensemble runs are new runs then.)
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.adaptive_plan import Budget, Compute, Costs
from harness.config import ExperimentConfig, seed_list
from harness.experiment import open_store, trajectory_specs

if TYPE_CHECKING:
    from harness.runs import Run  # imports torch

STRIDE = 1000  # student seed = trajectory index + STRIDE x student index: at most STRIDE trajectories


def initial_design(cfg: ExperimentConfig) -> tuple[int, int]:
    """Round 0: ``teacher.seeds`` trajectories with ``len(sweep.seeds) / len(teacher.seeds)`` students each."""
    n = len(seed_list(cfg.teacher))
    return n, max(1, len(seed_list(cfg.sweep)) // n)


def teacher_seeds_for(cfg: ExperimentConfig, n: int) -> list[int]:
    """The first ``n`` teacher seeds: the config's, then the integers after its largest."""
    seeds = [int(s) for s in seed_list(cfg.teacher)]
    nxt = max(seeds) + 1
    while len(seeds) < n:
        seeds.append(nxt)
        nxt += 1
    return seeds[:n]


def student_seeds_for(n: int, m: int) -> list[int]:
    """Student seeds of the design, ordered so that index ``i`` learns from trajectory ``i % n``."""
    if n > STRIDE:
        raise ValueError(f"an adaptive sweep has at most {STRIDE} trajectories, asked for {n}")
    return [t + STRIDE * j for j in range(m) for t in range(n)]


def round_config(cfg: ExperimentConfig, n: int, m: int) -> ExperimentConfig:
    """The user's config with the design's teacher and student seeds."""
    out = copy.deepcopy(cfg)
    out.teacher.seeds = teacher_seeds_for(cfg, n)
    out.sweep.seeds = student_seeds_for(n, m)
    return out


def budget_of(cfg: ExperimentConfig) -> Budget:
    b = cfg.sweep.budget
    return Budget(b.teacher_epochs, b.student_epochs, b.device_hours)


# ---------------------------------------------------------------------------------------------
# the comparisons an adaptive sweep decides


@dataclass(frozen=True)
class Comparison:
    key: str  # stable across rounds: the claim id, or "<choice> vs <reference>" (+ the group when several)
    label: str
    diffs: dict[Hashable, list[float]]  # {trajectory: [student differences]}


def _group(e: dict) -> str:
    return f"{e['dataset']}: {e['teacher_arch']} -> {e['student_arch']}"


def comparisons(cfg: ExperimentConfig, board: list[dict]) -> list[Comparison]:
    """The comparisons of interest on a leaderboard: every ``report.compare`` choice against
    ``report.reference``, or (``report.compare`` empty) the paper's claims the grid can answer."""
    from harness.report.claims import CLAIM_TEXT, claim_pairs
    from harness.report.paired import cluster_diffs, find_reference, same_runs

    pairs: list[tuple[str, str, dict, dict]] = []
    if cfg.report.compare:
        for e in board:
            if e["teacher_choice"] in cfg.report.compare:
                ref = find_reference(e, board, str(cfg.report.reference))
                if ref is not None and ref is not e:
                    key = f"{e['teacher_choice']} vs {ref['teacher_choice']}"
                    pairs.append((key, key, e, ref))
    else:
        for cid, e, ref in claim_pairs(board):
            pairs.append((cid, f"claim {cid}: {CLAIM_TEXT[cid]}", e, ref))
    groups = {_group(e) for _, _, e, _ in pairs}
    out = []
    for key, label, e, ref in pairs:
        if "crossfit" not in e and same_runs(e, ref):
            continue  # one run, not a hypothesis (epoch:<final> vs full)
        diffs = e["crossfit"] if "crossfit" in e else cluster_diffs(e, ref)
        if len(groups) > 1:
            key, label = f"{key} [{_group(e)}]", f"{label} [{_group(e)}]"
        out.append(Comparison(key, label, {k: list(v) for k, v in diffs.items() if len(v)}))
    return sorted(out, key=lambda c: c.key)


def design_rows(cfg: ExperimentConfig) -> list[dict]:
    """Every honest row (``rows_of_config``) trained for this design's students: its student seeds,
    each on its own trajectory, including ``full_ensemble`` runs whose partners a later round
    changed (compute that was spent)."""
    from harness.report.board import rows_of_config

    teachers = list(seed_list(cfg.teacher))
    ours = {s: teachers[s % STRIDE] for s in seed_list(cfg.sweep) if s % STRIDE < len(teachers)}
    rows, _ = rows_of_config(cfg, open_store(cfg).results.scan().rows)
    return [
        r
        for r in rows
        if r.get("seed") in ours and (r.get("teacher_seed") is None or r["teacher_seed"] == ours[r["seed"]])
    ]


def round_rows(cfg: ExperimentConfig, rows: list[dict]) -> list[dict]:
    """Of ``design_rows``, the rows of the round's grid alone: those whose run id is one of the
    grid's resolved runs (a ``full_ensemble`` run of an earlier or later round has other partners,
    hence another id)."""
    ids = round_run_ids(cfg)
    return [r for r in rows if r.get("run_id") in ids]


def round_run_ids(cfg: ExperimentConfig) -> set[str]:
    """The run ids of a round's grid, resolved against the store."""
    from harness.sweep import plan

    return {p.run_id for p in plan(cfg) if p.run_id}


def round_board(cfg: ExperimentConfig, rows: list[dict]) -> list[dict]:
    """The leaderboard of a round's grid from its ``design_rows`` (nothing written)."""
    from harness.report.board import board_for
    from harness.scoring.scores_file import read_all_scores

    return board_for(cfg, round_rows(cfg, rows), read_all_scores(open_store(cfg)), str(cfg.report.reported))


# ---------------------------------------------------------------------------------------------
# compute: spent so far, and the unit costs the planner weighs


def spent(cfg: ExperimentConfig, rows: list[dict]) -> Compute:
    """The compute a round's config has used: teacher epochs of its trajectories (manifest
    histories), student epochs of its ``design_rows``, and device hours (teacher epoch seconds +
    students' wall time per pack member + scoring cost)."""
    from harness.scoring.scores_file import estimates_cost_s, read_scores
    from harness.store import StoreError

    store = open_store(cfg)
    t_epochs, seconds = 0, 0.0
    for spec in trajectory_specs(cfg):
        traj = store.trajectory(spec.name)
        with contextlib.suppress(StoreError, ValueError, TypeError):
            history = traj.manifest().get("history", [])
            t_epochs += len(history)
            seconds += sum(float(h.get("seconds", 0.0)) for h in history)
        with contextlib.suppress(Exception):  # no scores yet: no scoring cost
            seconds += estimates_cost_s(read_scores(store, spec.name), list(cfg.scoring.estimators)) or 0.0
    s_epochs = 0
    for r in rows:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            s_epochs += int(r["epochs"])
            seconds += float(r["wall_time_s"]) / max(int(r.get("pack_size") or 1), 1)
    return Compute(float(t_epochs), float(s_epochs), seconds / 3600.0)


NOMINAL_FLOPS = 1e11  # FLOP/s of the nominal device that turns FLOPs into hours when the budget has no hours


def nominal_epoch_s(cfg: ExperimentConfig, arch: str) -> float | None:
    """Seconds of one training epoch of ``arch`` on the nominal device: 3 x the forward FLOPs of one
    sample (``torch.utils.flop_counter`` on the meta device: no data read, no weights) x the
    training rows; None when the data set's shape is not known without reading it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from harness.data.shapes import data_shape
    from harness.models import create_model

    shape = data_shape(cfg.data.name, {"num_samples": cfg.data.num_samples, **dict(cfg.data.options)})
    if shape.input_shape is None or shape.num_classes is None:
        return None
    with torch.device("meta"):
        model = create_model(arch, num_classes=shape.num_classes, input_shape=shape.input_shape)
        x = torch.empty((1, *shape.input_shape))
    with FlopCounterMode(display=False) as counter:
        model(x)
    rows = shape.train_pool or 1
    return 3.0 * float(counter.get_total_flops()) * rows / NOMINAL_FLOPS


def unit_costs(cfg: ExperimentConfig) -> Costs:
    """The planner's costs: epochs per trajectory and per student cell, and hours per epoch.

    With ``sweep.budget.device_hours`` the hours are the store's measured rates (a trajectory's
    scoring counted with its epochs), so the plan depends on measured time. Otherwise they are
    nominal: forward FLOPs per sample (teacher vs student, both train on the same split) at
    ``NOMINAL_FLOPS``, so the plan is a function of the config and the results alone."""
    from harness.status import measured_rates
    from harness.sweep import sweep_runs

    if cfg.sweep.budget.device_hours is not None:
        rates = measured_rates(cfg)
        t_s = (rates.teacher_epoch_s or 1.0) + (rates.score_s or 0.0) / max(cfg.teacher.epochs, 1)
        s_s = rates.student_epoch_s or 1.0
    else:
        teacher = [nominal_epoch_s(cfg, a) for a in cfg.teacher.archs]
        student = [nominal_epoch_s(cfg, a) for a in (list(cfg.sweep.student_archs) or list(cfg.student.archs))]
        known = all(f for f in teacher + student)
        t_s = sum(teacher) / len(teacher) if known else 1.0  # type: ignore[arg-type]
        s_s = sum(student) / len(student) if known else 1.0  # type: ignore[arg-type]
    cell = sweep_runs(round_config(cfg, 1, 1))  # the runs of one (trajectory, student seed) cell
    return Costs(
        teacher_epochs_per_trajectory=float(cfg.teacher.epochs * len(cfg.teacher.archs)),
        student_epochs_per_student=float(cfg.student.epochs * max(1, len(cell))),
        hours_per_teacher_epoch=t_s / 3600.0,
        hours_per_student_epoch=s_s / 3600.0,
        rerun_student_epochs=float(cfg.student.epochs * wrapped_runs(cell)),
    )


def wrapped_runs(cell: Sequence[Run]) -> int:
    """Runs of one student cell trained again when n grows: each ``full_ensemble:K`` run counts
    for its K-1 wrapped trajectories, whose partners change."""
    from harness.teacher_choices import parse_teacher_choice

    kinds = [parse_teacher_choice(run.teacher_choice) for run in cell]
    return sum(max(int(c.arg) - 1, 0) for c in kinds if c.kind == "full_ensemble")
