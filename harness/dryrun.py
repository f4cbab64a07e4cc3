"""``--dry-run``: what a verb would do, from the config and the store alone; computes and writes nothing.

Printed per stage: the teacher trajectories (done / to resume / to train, epochs left, the
checkpoint schedule), the scorer's work, the sweep grid (runs, done, to do, student-epochs) and
the resources each actor or trial would request. A grid of 10^5 runs is counted without
building a config per run; runs whose teachers are not trained yet cannot be resolved to run
ids, so their "done" status is reported as unknown rather than guessed.
"""

from __future__ import annotations

import copy
import os
import tempfile

from harness.config import ExperimentConfig
from harness.experiment import open_store, trajectory_specs
from harness.runs import Run
from harness.sweep import pack_sizes, plan, sweep_runs
from harness.teachers import checkpoint_epochs

STAGES = {"teachers": ("teachers",), "score": ("score",), "sweep": ("sweep",), "run": ("teachers", "score", "sweep")}


def describe(cfg: ExperimentConfig, verb: str) -> str:
    """The plan of ``verb`` (run | teachers | score | sweep) as text."""
    parts = [
        f"plan of `ckd {verb}` for experiment {cfg.name!r} in {open_store(cfg).root} "
        f"({'in this process' if cfg.cluster.mode == 'local' else 'on Ray'}); nothing was run or written"
    ]
    for stage in STAGES[verb]:
        parts.append({"teachers": _teachers, "score": _score, "sweep": _sweep}[stage](cfg))
    return "\n\n".join(parts)


def _resources(cfg: ExperimentConfig, kind: str) -> str:
    if cfg.cluster.mode == "local":
        return "in this process"
    r = cfg.cluster[kind]
    return f"{r.cpus:g} CPU, {r.gpus:g} GPU per {kind}"


def _teachers(cfg: ExperimentConfig) -> str:
    store, t = open_store(cfg), cfg.teacher
    saves = checkpoint_epochs(t.epochs, t.checkpoint_every)
    lines, epochs_left = [], 0
    for spec in trajectory_specs(cfg):
        traj = store.trajectory(spec.name)
        done = traj.checkpoints()[-1]["epoch"] if traj.exists() and traj.checkpoints() else 0
        state = "finished" if traj.is_finished() else (f"resume after epoch {done}" if traj.exists() else "to train")
        left = 0 if traj.is_finished() else t.epochs - done
        epochs_left += left
        lines.append(f"  {spec.name:<40} {state:<24} {left:>5} epochs left")
    head = (
        f"[teachers] {len(lines)} trajectories x {t.epochs} epochs, checkpoints at {saves} "
        f"({len(saves)} each); {epochs_left} teacher-epochs to train; {_resources(cfg, 'trajectory')}"
    )
    return "\n".join([head, *lines])


def _score(cfg: ExperimentConfig) -> str:
    from harness.scoring.freshness import scores_fresh

    names = [s.name for s in trajectory_specs(cfg)]
    fresh = [n for n in names if scores_fresh(cfg, n)]
    return (
        f"[score] {len(names)} trajectories, {len(names) - len(fresh)} to score ({len(fresh)} up to date); "
        f"estimators {', '.join(cfg.scoring.estimators)} on {cfg.scoring.num_samples} validation samples; "
        f"{_proxies(cfg)}{_resources(cfg, 'scorer')}"
    )


def _proxies(cfg: ExperimentConfig) -> str:
    """The proxy selectors' plan: rungs and student-epochs per trajectory (harness/scoring/proxy.py)."""
    from harness.scoring.proxy import planned_cost, proxy_selectors, proxy_settings, rung_epochs, rung_sizes

    n = len(checkpoint_epochs(cfg.teacher.epochs, cfg.teacher.checkpoint_every))
    parts = []
    for name in proxy_selectors(cfg):
        s = proxy_settings(cfg, name)
        sizes = rung_sizes(n, s.rungs, s.reduction_factor)
        rungs = ", ".join(f"{k} at {e}" for k, e in zip(sizes, rung_epochs(s, len(sizes))))
        parts.append(
            f"{name} ({s.student} x {len(s.seeds)} seed(s); candidates at epochs: {rungs or 'none'}; "
            f"{planned_cost(n, s)} student-epochs per trajectory)"
        )
    return f"proxy selectors {'; '.join(parts)}; " if parts else ""


def _sweep(cfg: ExperimentConfig) -> str:
    runs = sweep_runs(cfg)
    try:
        planned = plan(cfg, runs)
        done: int | None = sum(p.done for p in planned)
    except (ValueError, RuntimeError) as e:  # teachers or scores not there yet
        done, why = None, str(e).splitlines()[0]
    todo = len(runs) - (done or 0)
    trials = len(runs) * cfg.sweep.num_samples if cfg.sweep.search != "grid" else todo
    status = (
        f"{done} done, {todo} to train"
        if done is not None
        else f"done unknown until the teachers (and scores) exist: {why}"
    )
    return (
        f"[sweep] {len(runs)} runs in the grid ({cfg.sweep.search}): {status}; about "
        f"{trials * cfg.student.epochs} student-epochs ({trials} students x {cfg.student.epochs} epochs); "
        f"{_packs(cfg, runs)}; {_resources(cfg, 'trial')}"
    )


def _packs(cfg: ExperimentConfig, runs: list[Run]) -> str:
    """How the students would pack into trials (``sweep.pack_size``) on a local cluster."""
    slots = max(1, int((cfg.cluster.num_cpus or os.cpu_count() or 1) / max(cfg.cluster.trial.cpus, 1e-9)))
    scratch = copy.deepcopy(cfg)  # the model size needs the data's shape: any data cache goes to a temp folder
    with tempfile.TemporaryDirectory() as tmp:
        scratch.storage = tmp
        try:
            sizes = pack_sizes(scratch, runs, slots)
        except (OSError, ValueError, RuntimeError) as e:  # the data set is not readable here
            return f"packs unknown ({e})"
    return (
        f"sweep.pack_size={cfg.sweep.pack_size}: up to "
        + ", ".join(f"{n} {arch}" for arch, n in sizes.items())
        + " students per trial"
    )
