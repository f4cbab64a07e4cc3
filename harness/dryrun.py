"""``--dry-run``: what a verb would do, from the config and the store alone; computes and writes nothing.

Printed per stage: the teacher trajectories (done / to resume / to train, epochs left, the
checkpoint schedule), the scorer's work, the sweep grid (runs, done, to do, student-epochs) and
the resources each actor or trial would request, the runs that will be skipped (with the reason)
and a time estimate from the rates measured in the store (``harness.status.measured_rates``).
Runs whose teachers are not trained (or scored, when their choice needs scores) yet cannot be
resolved to run ids: they are counted as queued, waiting for them. Model sizes come from the data
set's known shape (``harness/data/shapes.py``): nothing is generated or read, no temporary path.
"""

from __future__ import annotations

import os

import torch

from harness.config import ExperimentConfig
from harness.config_validation import pack_size_setting
from harness.data.shapes import data_shape
from harness.experiment import open_store, trajectory_specs
from harness.failures import run_label
from harness.models import create_model
from harness.packing import auto_pack_size, parameter_count
from harness.report.console import cut
from harness.runs import Run
from harness.status import WIDTH, SweepState, measured_rates, sweep_state
from harness.sweep import sweep_runs
from harness.teachers import checkpoint_epochs, teacher_packs

STAGES = {"teachers": ("teachers",), "score": ("score",), "sweep": ("sweep",), "run": ("teachers", "score", "sweep")}


def describe(cfg: ExperimentConfig, verb: str) -> str:
    """The plan of ``verb`` (run | teachers | score | sweep) as text; an adaptive ``run``: the
    rounds so far and the next round's plan, then that round's stages."""
    if verb == "run" and cfg.sweep.until == "decided":
        from harness.adaptive import describe_next

        head, round_cfg = describe_next(cfg)
        return head if round_cfg is None else f"{head}\n\n{_describe_stages(round_cfg, verb)}"
    return _describe_stages(cfg, verb)


def _describe_stages(cfg: ExperimentConfig, verb: str) -> str:
    parts = [
        f"plan of `ckd {verb}` for experiment {cfg.name!r} in {open_store(cfg).root} "
        f"({'in this process' if cfg.cluster.mode == 'local' else 'on Ray'}); nothing was run or written"
    ]
    state = None
    if "sweep" in STAGES[verb]:  # the grid listed and resolved once (a 10^5-run grid takes seconds)
        runs = sweep_runs(cfg)
        state = sweep_state(cfg, runs)
    stages = {"teachers": _teachers, "score": _score, "sweep": lambda c: _sweep(c, runs, state)}
    parts += [stages[stage](cfg) for stage in STAGES[verb]]
    parts.append(f"[time] {_estimate(cfg, verb, state)}")
    return "\n\n".join(parts)


def _estimate(cfg: ExperimentConfig, verb: str, state: SweepState | None = None) -> str:
    """The work left of ``verb``'s stages at the store's measured rates (or none measured yet)."""
    from harness.scoring.freshness import scores_fresh

    stages, store, t = STAGES[verb], open_store(cfg), cfg.teacher
    teacher_epochs = to_score = student_epochs = 0
    for spec in trajectory_specs(cfg):
        traj = store.trajectory(spec.name)
        if "teachers" in stages and not traj.is_finished():
            teacher_epochs += t.epochs - (traj.checkpoints()[-1]["epoch"] if traj.checkpoints() else 0)
        to_score += "score" in stages and not scores_fresh(cfg, spec.name)
    if "sweep" in stages:
        state = state or sweep_state(cfg, sweep_runs(cfg))
        student_epochs = (len(state.todo) + len(state.waiting)) * cfg.student.epochs
    return measured_rates(cfg).estimate(teacher_epochs, student_epochs, to_score)


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
    packs = teacher_packs(cfg)
    shown = ", ".join(f"{p.arch} {list(p.seeds)}" for p in packs[:8]) + (", ..." if len(packs) > 8 else "")
    return "\n".join([head, f"  teacher.pack_size={cfg.teacher.pack_size}: {len(packs)} pack(s): {shown}", *lines])


def _score(cfg: ExperimentConfig) -> str:
    from harness.scoring.freshness import scores_fresh

    names = [s.name for s in trajectory_specs(cfg)]
    fresh = [n for n in names if scores_fresh(cfg, n)]
    return (
        f"[score] {len(names)} trajectories, {len(names) - len(fresh)} to score ({len(fresh)} up to date); "
        f"estimators {', '.join(cfg.scoring.estimators)} on {_scoring_sample(cfg)}; "
        f"{_proxies(cfg)}{_resources(cfg, 'scorer')}"
    )


def _scoring_sample(cfg: ExperimentConfig) -> str:
    """The rows the scorer uses: ``scoring.num_samples`` capped by the validation split
    (``scoring/sample.py``), as a scores file records it, else from the data set's shape."""
    from harness.scoring.scores_file import read_scores

    store = open_store(cfg)
    for spec in trajectory_specs(cfg):
        try:
            info = read_scores(store, spec.name)["data"]
            if info.get("val_size") is not None:
                n, n_val = min(cfg.scoring.num_samples, int(info["val_size"])), int(info["val_size"])
                return f"{n} validation samples (scoring.num_samples={cfg.scoring.num_samples}, val split {n_val})"
        except Exception:  # no or an unreadable scores file: the data set's shape
            continue
    n_val = data_shape(cfg.data.name, _data_options(cfg)).val_size(cfg.data.val_fraction)
    if n_val is None:
        return (
            f"up to {cfg.scoring.num_samples} validation samples (scoring.num_samples; the val split's size is unknown)"
        )
    n = min(cfg.scoring.num_samples, n_val)
    capped = f", capped by the val split of {n_val}" if n < cfg.scoring.num_samples else ""
    return f"{n} validation samples (scoring.num_samples={cfg.scoring.num_samples}{capped})"


def _data_options(cfg: ExperimentConfig) -> dict:
    """The data set's options as ``experiment.load_splits`` passes them (``data.num_samples`` too)."""
    from harness.data import dataset_options

    options = dict(cfg.data.options)
    if "num_samples" in dataset_options(cfg.data.name):
        options.setdefault("num_samples", cfg.data.num_samples)
    return options


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


def _sweep(cfg: ExperimentConfig, runs: list[Run], state: SweepState) -> str:
    todo = len(state.todo) + len(state.waiting)
    trials = len(runs) * cfg.sweep.num_samples if cfg.sweep.search != "grid" else todo
    waits = {w: sum(x == w for _, x in state.waiting) for w in ("teachers", "scores")}
    waiting = ", ".join(f"{n} wait for their {w}" for w, n in waits.items() if n)
    head = (
        f"[sweep] {len(runs)} runs in the grid ({cfg.sweep.search}): {len(state.done)} done, {todo} to train"
        f"{f' ({waiting})' if waiting else ''}, {len(state.skipped)} to skip; about "
        f"{trials * cfg.student.epochs} student-epochs ({trials} students x {cfg.student.epochs} epochs); "
        f"{_packs(cfg, runs)}; {_resources(cfg, 'trial')}"
    )
    skipped = [cut(f"  skip {run_label(r.to_dict())}: {why}", WIDTH) for r, why in state.skipped]
    return "\n".join([head, *skipped])


def _packs(cfg: ExperimentConfig, runs: list[Run]) -> str:
    """How the students would pack into trials (``sweep.pack_size``) on a local cluster; model
    sizes from the data set's shape (``harness/data/shapes.py``), built on the meta device."""
    slots = max(1, int((cfg.cluster.num_cpus or os.cpu_count() or 1) / max(cfg.cluster.trial.cpus, 1e-9)))
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.student_arch] = counts.get(run.student_arch, 0) + 1
    fixed = pack_size_setting(cfg.sweep)
    if fixed is None and (cfg.sweep.scheduler != "none" or cfg.sweep.search != "grid"):
        fixed = 1  # a scheduler or searcher steers single runs (``sweep.pack_size``)
    shape = data_shape(cfg.data.name, _data_options(cfg))
    if fixed is None and (shape.input_shape is None or shape.num_classes is None):
        return (
            f"sweep.pack_size=auto: packs known once the data set is read ({cfg.data.name}'s shape is not known here)"
        )
    sizes = {}
    for arch, n in counts.items():
        if fixed is not None:
            sizes[arch] = fixed
            continue
        with torch.device("meta"):
            params = parameter_count(create_model(arch, num_classes=shape.num_classes, input_shape=shape.input_shape))
        sizes[arch] = auto_pack_size(params, torch.device("cpu"), n, slots)
    return (
        f"sweep.pack_size={cfg.sweep.pack_size}: up to "
        + ", ".join(f"{n} {arch}" for arch, n in sizes.items())
        + " students per trial"
    )
