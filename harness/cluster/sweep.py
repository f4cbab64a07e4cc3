"""The Ray Tune sweep: one trial = one pack of students (``sweep.pack_size``; a pack of one is
one student distilled from one teacher choice).

The grid comes from the core ``harness/sweep.py`` (``sweep_runs``, ``plan``). ``sweep.search``:
grid (every run, ``num_samples`` times), random (``num_samples`` draws from the grid), optuna /
hyperopt (when installed); ``sweep.scheduler``: none or ASHA on ``val_acc``.

Trainable (``distill_trial``): the core ``distill_pack`` with an ``on_epoch`` hook that calls
``tune.report(metrics)`` (the members' means) every epoch and saves the pack's state to
``student_state.pt`` in the trial's folder every ``sweep.checkpoint_every`` epochs, and
``resume=`` that state, so a trial retried by ``FailureConfig(max_failures)`` or restored after a
driver crash continues where it stopped (Tune checkpoints are not used: ``num_to_keep`` forces
an O(trials) experiment snapshot every few checkpoints of every trial). Hyperparameters are
ranked on ``val_acc`` (``TuneConfig(metric="val_acc", mode="max")``); test accuracy is only
reported. ``distill_pack`` writes one result row per member (deduplicated by run id), with the
trial's Tune identity (trial id, name, experiment dir). Each trial logs to ``distill.log`` in its trial folder.
Each run trains under its lease (``harness/leases.py``): a trial whose runs another sweep (or
``ckd run``) on the same experiment is training waits for them and reports their rows, so two
sweeps at once never train one student twice.

Idempotence: a grid whose every run is already in the results file is not started at all; an
interrupted one is continued with ``Tuner.restore`` (the Tune experiment is named after a hash
of the grid, under ``<storage>/<name>/tune/``).
"""

from __future__ import annotations

import copy
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from harness.cluster.connection import ClusterSession
from harness.cluster.errors import SweepError
from harness.config import ConfigError, ExperimentConfig, to_dict
from harness.distill import distill_pack
from harness.experiment import open_store, stage_threads
from harness.fileio import StoredFileError, UnsafeFileError, atomic_write_bytes, read_regular_bytes, safe_torch_load
from harness.logs import file_log
from harness.runs import Run
from harness.store import CHECKPOINT_MAX_BYTES, StoreError
from harness.sweep import (
    PlannedRun,
    describe_pack,
    grid_name,
    make_packs,
    pack_sizes,
    plan,
    rows_of,
    sweep_runs,
    trial_runs,
)

logger = logging.getLogger(__name__)
METRIC, MODE = "val_acc", "max"
STATE_FILE = "student_state.pt"


# --------------------------------------------------------------------------- the trainable


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def trial_name(trial) -> str:
    runs = trial_runs(trial.config)
    run = runs[0]
    more = f"+{len(runs) - 1}" if len(runs) > 1 else ""
    return _sanitize(
        f"{run.get('teacher_choice')}-T{run.get('temperature')}-w{run.get('kd_weight')}-"
        f"{run.get('student_arch')}-s{run.get('seed')}{more}-{trial.trial_id}"
    )


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def trial_storage_dir(ctx) -> Path:
    """The trial's folder in the Tune experiment under ``<storage>`` (shared by all nodes), not
    the node-local working dir that ``get_trial_dir()`` gives."""
    try:
        path = Path(ctx.get_storage().trial_fs_path)
        if path.is_absolute():
            return path
    except Exception:
        pass
    return Path(ctx.get_trial_dir())


def distill_trial(config: dict, cfg: ExperimentConfig | None = None) -> None:
    """Tune function trainable: distill the pack of ``config``, report every epoch."""
    import ray
    import torch
    from ray import tune

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no "checkpoint created" line per epoch
    runs = trial_runs(config)
    rcfg = copy.deepcopy(cfg)
    rcfg.threads = stage_threads(cfg, "trial")
    torch.set_num_threads(rcfg.threads)
    ctx = tune.get_context()
    trial_dir = trial_storage_dir(ctx)
    with file_log(trial_dir / "distill.log"):
        logger.info(
            f"[trial {ctx.get_trial_name()}] pid {os.getpid()} on node "
            f"{ray.get_runtime_context().get_node_id()}, {rcfg.threads} torch thread(s); "
            f"{len(runs)} student(s): {describe_pack(runs)}"
        )
        reporter = TrialReporter(trial_dir / STATE_FILE, cfg.sweep.checkpoint_every, cfg.student.epochs)
        fields = {
            "trial_id": ctx.get_trial_id(),
            "trial_name": ctx.get_trial_name(),
            "tune_experiment": ctx.get_experiment_name(),
            "tune_trial_dir": str(trial_dir),
            "teacher_seeds_policy": str(cfg.sweep.teacher_seeds),
        }
        rows = distill_pack(
            rcfg,
            [Run.from_dict(cfg, r) for r in runs],
            on_epoch=reporter.on_epoch,
            resume=_load_trial_state(trial_dir, ctx.get_trial_name()),
            row_fields=fields,
        )
        reporter.finish(rows)


def _load_trial_state(trial_dir: Path, name: str) -> dict | None:
    """The student state a previous attempt of this trial saved (a retried or restored trial)."""
    path = trial_dir / STATE_FILE
    if not path.is_file():
        return None
    state = read_trial_state(path)
    logger.info(f"[trial {name}] resuming from its checkpoint after epoch {len(state.get('histories', [[]])[0])}")
    return state


def read_trial_state(path: Path) -> dict:
    """A trial's saved student state: a regular file of bounded size (no symlink, FIFO or device),
    through the safe loader (a planted pickle is refused)."""
    try:
        data = read_regular_bytes(path, CHECKPOINT_MAX_BYTES, "trial state")
        return safe_torch_load(data, what=f"trial state {path}")
    except (UnsafeFileError, StoredFileError) as e:
        raise StoreError(str(e)) from None


class TrialReporter:
    """``tune.report`` per epoch; every ``every`` epochs the student state is saved (atomically,
    one file overwritten in place) next to the trial's results, for a retried or restored trial.

    Not Tune checkpoints: with ``CheckpointConfig(num_to_keep)`` Tune forces an experiment-state
    snapshot (O(trials)) every few checkpoints of every trial, O(trials^2) per sweep, and keeping
    every checkpoint instead would fill the disk. The last epoch's report is held back until the
    result row is written: a scheduler may stop the trial at its last report.
    """

    def __init__(self, state_path: Path, every: int, epochs: int) -> None:
        self.state_path, self.every, self.epochs = state_path, every, epochs
        self.reported: list[int] = []
        self.final: list[dict] = []

    def on_epoch(self, metrics: dict, state: dict) -> None:
        from ray import tune

        from harness.store import torch_bytes

        m = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        epoch = int(metrics["epoch"])
        self.reported.append(epoch)
        if epoch == self.epochs:
            self.final.append(m)
            return
        if epoch % self.every == 0:
            atomic_write_bytes(self.state_path, torch_bytes(state))
        tune.report(m)

    def finish(self, rows: list[dict]) -> None:
        """Send the held-back last report, or the rows' means when nothing was trained here."""
        from ray import tune

        if self.final:
            tune.report(self.final[0])
        elif not self.reported:  # done before (results file) or every epoch was in the checkpoint
            mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
            tune.report(
                {
                    "epoch": rows[0].get("epochs", self.epochs),
                    METRIC: mean("final_val_acc"),
                    "test_acc": mean("final_test_acc"),
                    "best_val_acc": mean("best_val_acc"),
                    "members": len(rows),
                    "from_results": 1,
                }
            )


# --------------------------------------------------------------------------- the Tuner


def _search_alg(cfg: ExperimentConfig):
    search = cfg.sweep.search
    if search in ("grid", "random"):
        return None
    try:
        if search == "optuna":
            from ray.tune.search.optuna import OptunaSearch

            alg = OptunaSearch(metric=METRIC, mode=MODE)
        else:
            from ray.tune.search.hyperopt import HyperOptSearch

            alg = HyperOptSearch(metric=METRIC, mode=MODE)
    except (ImportError, AssertionError) as e:
        raise ConfigError(
            f"config key 'sweep.search': {search!r} needs its package ({e}); pip install {search}, or use grid/random"
        ) from None
    if cfg.sweep.max_concurrent:
        from ray.tune.search import ConcurrencyLimiter

        alg = ConcurrencyLimiter(alg, max_concurrent=cfg.sweep.max_concurrent)
    return alg


def trial_slots(session: ClusterSession) -> tuple[int, str]:
    """(how many trials run at once on the cluster, the device a trial gets): what auto packs split over."""
    res, info = session.resources("trial"), session.info
    slots = info.num_cpus / max(res["num_cpus"], 1e-9)
    if res["num_gpus"] > 0:
        slots = min(slots, info.num_gpus / res["num_gpus"])
    if cfg_max := session.cfg.sweep.max_concurrent:
        slots = min(slots, cfg_max)
    return max(1, int(slots)), "cuda" if res["num_gpus"] > 0 else "cpu"


def param_space(cfg: ExperimentConfig, runs: list[Run], sizes: dict[str, int] | None = None) -> dict:
    """The trials' configs, made of ``Run.to_dict`` entries. ``sizes``: members per pack and
    student arch (``pack_sizes``); default: a pack of one."""
    from ray import tune

    if cfg.sweep.search == "grid":
        packs = make_packs(cfg, runs, sizes=sizes or {r.student_arch: 1 for r in runs})
        if len(packs) < len(runs):
            logger.info(
                f"[sweep] {len(runs)} runs in {len(packs)} packs (sweep.pack_size={cfg.sweep.pack_size}: "
                f"up to {max(len(p) for p in packs)} students per trial)"
            )
        return {"runs": tune.grid_search([[r.to_dict() for r in pack] for pack in packs])}
    if cfg.sweep.search == "random":
        return {"run": tune.choice([r.to_dict() for r in runs])}
    # model-based searchers want flat categorical dimensions; the teacher seed follows the policy
    dims = {k: sorted({getattr(r, k) for r in runs}, key=str) for k in Run.keys() if k != "teacher_seed"}
    return {"run": {k: tune.choice(v) for k, v in dims.items()}}


def _trainable(session: ClusterSession, function: Callable = None):
    from ray import tune

    cfg = session.cfg
    res = session.resources("trial")
    return tune.with_resources(
        tune.with_parameters(function or distill_trial, cfg=cfg), {"cpu": res["num_cpus"], "gpu": res["num_gpus"]}
    )


def build_tuner(
    session: ClusterSession,
    runs: list[Run],
    pins: list | None = None,
    function: Callable | None = None,
    searcher=None,
    part: str = "",
    sizes: dict[str, int] | None = None,
):
    """A new Tuner for ``runs``, or the restored one when the experiment dir holds it.
    ``function``: another trainable ``f(config, cfg)`` (benchmarks/bench_tune_overhead.py);
    ``searcher``: a ``ReadyRuns`` that releases the runs as their teachers become ready."""
    from ray import tune

    cfg = session.cfg
    storage_path = open_store(cfg).root / "tune"
    name = grid_name(cfg, runs, pins) + part
    path = storage_path / name
    trainable = _trainable(session, function)
    if tune.Tuner.can_restore(str(path)):
        logger.info(f"[sweep] resuming the Tune experiment {path} (Tuner.restore)")
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True), path
    search_alg = searcher or _search_alg(cfg)
    if searcher is None and cfg.sweep.search == "grid" and sizes is None:
        sizes = pack_sizes(cfg, runs, *trial_slots(session))
    tuner = tune.Tuner(
        trainable,
        param_space={} if searcher is not None else param_space(cfg, runs, sizes),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            scheduler=_scheduler(cfg),
            search_alg=search_alg,
            num_samples=len(runs) if searcher is not None else cfg.sweep.num_samples,
            max_concurrent_trials=(cfg.sweep.max_concurrent or None) if search_alg is None else None,
            reuse_actors=cfg.sweep.reuse_actors,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage_path),
            failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
            # no Tune checkpoints: trials keep their own state file (TrialReporter)
            callbacks=_callbacks(cfg, len(runs) * cfg.sweep.num_samples),
            verbose=0,
            log_to_file=True,
        ),
    )
    return tuner, path


def _scheduler(cfg: ExperimentConfig):
    if cfg.sweep.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="epoch",
        max_t=cfg.student.epochs,  # epochs survive a resumed trial
        grace_period=min(cfg.sweep.grace_period, cfg.student.epochs),
        reduction_factor=cfg.sweep.reduction_factor,
    )


def _callbacks(cfg: ExperimentConfig, trials: int) -> list:
    from harness import tracking
    from harness.cluster.sweep_progress import SweepProgress

    callbacks = [SweepProgress(cfg.cluster.progress_interval_s, cfg.student.epochs, trials)]
    if tracking.enabled(cfg):
        from harness.cluster.sweep_tracking import StudentRuns

        callbacks.append(StudentRuns(cfg))
    return callbacks


def run_sweep_overlapped(session: ClusterSession, status) -> list[dict]:
    """The grid as a Tune experiment whose runs start as their teachers become ready, while the
    teachers still train (``status``: the teachers thread's progress); returns the result rows."""
    from harness.cluster.ready_runs import ReadyRuns

    cfg = session.cfg
    runs = sweep_runs(cfg)
    logger.info(f"[sweep] {len(runs)} runs in the grid; each starts as soon as its teachers (and scores) are ready")
    # runs released before they can be resolved: the scoring config pins what selected:* will pick
    sizes = pack_sizes(cfg, runs, *trial_slots(session))
    tuner, path = build_tuner(
        session,
        runs,
        ["overlap", to_dict(cfg.scoring)],
        searcher=ReadyRuns(cfg, [r.to_dict() for r in runs], status, pack_sizes=sizes),
    )
    errors = _fit(tuner, path)
    store = open_store(cfg)  # results.{jsonl,csv}: compacted by the verb (harness.pipeline)
    _raise_for_errors(cfg, errors)
    status.done.wait()
    return _check_rows(cfg, store, plan(cfg, runs), path) if not status.failed else store.read_results()


def run_sweep(session: ClusterSession) -> list[dict]:
    """``ckd sweep`` on Ray: plan, skip when done, fit (or restore), check; returns the result rows."""
    cfg = session.cfg
    runs = sweep_runs(cfg)
    planned = plan(cfg, runs) if cfg.sweep.search == "grid" else []
    store = open_store(cfg)
    if planned and all(p.done for p in planned) and cfg.sweep.num_samples == 1:
        logger.info(f"[sweep] all {len(planned)} runs of the grid have results in {store.root}; nothing to run")
        return rows_of(store, planned)
    if planned:
        todo = sum(not p.done for p in planned)
        logger.info(f"[sweep] {len(planned)} runs in the grid, {todo} to train, {len(planned) - todo} done already")
    else:
        logger.info(f"[sweep] {cfg.sweep.search} search: {cfg.sweep.num_samples} trials over {len(runs)} grid points")
    errors, path = [], None
    # members per pack, once for the grid (it reads the data's shape), not once per Tune experiment
    sizes = pack_sizes(cfg, [p.run for p in planned], *trial_slots(session)) if planned else None
    for label, part in _slices(cfg, planned, runs):
        tuner, path = build_tuner(
            session,
            [p.run for p in part] if planned else runs,
            [p.run_id for p in part] or None,
            part=label,
            sizes=sizes,
        )
        errors += _fit(tuner, path)
    _raise_for_errors(cfg, errors)
    return _check_rows(cfg, store, planned, path) if planned else store.read_results()


def _fit(tuner, path: Path) -> list:
    """Run one Tune experiment; its errored results."""
    began = time.perf_counter()
    results = tuner.fit()
    errors = [r for r in results if r.error is not None]
    logger.info(
        f"[sweep] Tune experiment {path}: {len(results)} trials, {len(errors)} errored, "
        f"{time.perf_counter() - began:.1f}s"
    )
    return errors


def _slices(cfg: ExperimentConfig, planned: list[PlannedRun], runs: list[Run]) -> list[tuple[str, list[PlannedRun]]]:
    """The grid cut into Tune experiments of ``sweep.trials_per_experiment`` runs (a fixed cut, so a
    re-run restores the same parts); parts whose runs are all done are left out. The Tune driver
    keeps every trial of an experiment in memory (~80 KB each), so slices bound its memory."""
    size = cfg.sweep.trials_per_experiment
    if not planned or not size or len(planned) <= size:
        return [("", planned)]
    parts = [planned[i : i + size] for i in range(0, len(planned), size)]
    out = [(f"-part{k:03d}", part) for k, part in enumerate(parts) if not all(p.done for p in part)]
    logger.info(f"[sweep] {len(parts)} Tune experiments of up to {size} runs ({len(out)} with runs to train)")
    return out


def _raise_for_errors(cfg: ExperimentConfig, errors: list) -> None:
    if not errors:
        return
    lines = []
    for r in errors[:5]:
        first = str(r.error).strip().splitlines()
        lines.append(f"{describe_pack(trial_runs(r.config or {}))}: {first[-1] if first else r.error} (logs: {r.path})")
    raise SweepError(
        f"{len(errors)} sweep trial(s) failed after sweep.max_failures={cfg.sweep.max_failures} retries: "
        + "; ".join(lines)
        + ". Fix the cause and re-run: the sweep resumes (Tuner.restore) and finished trials are kept"
    )


def _check_rows(cfg: ExperimentConfig, store, planned: list[PlannedRun], path: Path) -> list[dict]:
    """The planned runs' rows; a run without a row is an error unless a scheduler stopped it."""
    rows = rows_of(store, planned)
    missing = len({p.run_id for p in planned}) - len(rows)
    if missing and cfg.sweep.scheduler == "none":
        raise SweepError(
            f"{missing} planned runs have no result row in {store.root} although no trial "
            f"failed; see the Tune experiment {path}, then re-run"
        )
    if missing:
        logger.info(f"[sweep] {missing} runs were stopped early by the {cfg.sweep.scheduler} scheduler (no result row)")
    return rows
