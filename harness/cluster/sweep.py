"""The Ray Tune sweep: one trial = one pack of students (``sweep.pack_size``; a pack of one is
one student distilled from one teacher choice).

The grid comes from the core ``harness/sweep.py`` (``sweep_runs``, ``plan``). ``sweep.search``:
grid (every run, ``num_samples`` times), random (``num_samples`` draws from the grid), optuna /
hyperopt (when installed); ``sweep.scheduler``: none or ASHA on ``val_acc``.

Trainable: ``harness/cluster/trainable.py`` (``distill_trial``: one pack per trial, reporting
each member's metrics; members fail alone; deterministic errors are recorded, not retried).
Hyperparameters are ranked on ``val_acc`` (``TuneConfig(metric="val_acc", mode="max")``); test
accuracy is only reported. Runs that cannot train are skipped before launch (``plan``,
``record_skips``); Tune trials that fail past ``sweep.max_failures`` retries are recorded per run.

Idempotence: a grid whose every run is already in the results file is not started at all; an
interrupted one is continued with ``Tuner.restore`` (the Tune experiment is named after a hash
of the grid, under ``<storage>/<name>/tune/``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from harness import failures
from harness.cluster.connection import ClusterSession
from harness.cluster.trainable import (
    METRIC,
    MODE,
    distill_trial,
    record_unfinished,
    trial_config,
    trial_dirname,
    trial_name,
)
from harness.config import ConfigError, ExperimentConfig, to_dict
from harness.experiment import open_store
from harness.objects import tune_storage
from harness.runs import Run
from harness.sweep import (
    PlannedRun,
    grid_name,
    make_packs,
    pack_sizes,
    plan,
    record_skips,
    rows_of,
    sweep_runs,
    trial_runs,
)

logger = logging.getLogger(__name__)


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
        tune.with_parameters(function or distill_trial, cfg=trial_config(cfg)),
        {"cpu": res["num_cpus"], "gpu": res["num_gpus"]},
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
    root = open_store(cfg).root / "tune"
    storage_path, storage_fs = tune_storage(root)  # an object prefix goes through the store's client
    name = grid_name(cfg, runs, pins) + part
    path = root / name
    trainable = _trainable(session, function)
    if tune.Tuner.can_restore(f"{storage_path}/{name}", storage_filesystem=storage_fs):
        logger.info(f"[sweep] resuming the Tune experiment {path} (Tuner.restore)")
        tuner = tune.Tuner.restore(
            f"{storage_path}/{name}",
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=storage_fs,
        )
        return tuner, path
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
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
            # no Tune checkpoints: trials keep their own state file (TrialReporter)
            callbacks=_callbacks(cfg, len(runs) * cfg.sweep.num_samples, getattr(searcher, "waiting_for", None)),
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


def _callbacks(cfg: ExperimentConfig, trials: int, waiting: Callable[[], str | None] | None = None) -> list:
    """Progress (``waiting``: what runs not yet released wait for) and, when tracking, W&B."""
    from harness import tracking
    from harness.cluster.sweep_progress import SweepProgress

    callbacks = [SweepProgress(cfg.cluster.progress_interval_s, cfg.student.epochs, trials, waiting=waiting)]
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
    _record_trial_errors(cfg, errors)
    status.done.wait()
    if status.failed:
        return store.read_results()
    planned = plan(cfg, runs)
    said = frozenset(e["key"] for e in failures.read_failures(store.root) if e["status"] == "skipped")
    record_skips(cfg, planned, said)  # says only runs ReadyRuns never saw (their teachers failed)
    return _check_rows(cfg, store, [p for p in planned if not p.skip], path)


def run_sweep(session: ClusterSession) -> list[dict]:
    """``ckd sweep`` on Ray: plan (runs that cannot train are skipped with their reason), skip
    when done, fit (or restore), record what failed; returns the result rows."""
    cfg = session.cfg
    runs = sweep_runs(cfg)
    planned = plan(cfg, runs) if cfg.sweep.search == "grid" else []
    skipped = record_skips(cfg, planned) if planned else []
    planned = [p for p in planned if not p.skip]
    store = open_store(cfg)
    if (not planned or all(p.done for p in planned)) and skipped and cfg.sweep.num_samples == 1:
        logger.info(f"[sweep] nothing to train: {len(planned)} run(s) done, {len(skipped)} skipped")
        return rows_of(store, planned)
    if planned and all(p.done for p in planned) and cfg.sweep.num_samples == 1:
        logger.info(f"[sweep] all {len(planned)} runs of the grid have results in {store.root}; nothing to run")
        return rows_of(store, planned)
    if planned:
        todo = sum(not p.done for p in planned)
        logger.info(
            f"[sweep] {len(planned) + len(skipped)} runs in the grid, {todo} to train, "
            f"{len(planned) - todo} done already" + (f", {len(skipped)} skipped" if skipped else "")
        )
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
    _record_trial_errors(cfg, errors)
    return _check_rows(cfg, store, planned, path) if planned else store.read_results()


def _fit(tuner, path: Path) -> list:
    """Run one Tune experiment; its errored results."""
    began = time.perf_counter()
    results = tuner.fit()
    errors = [r for r in results if r.error is not None]
    logger.info(
        f"[sweep] Tune experiment {path}: {len(results)} trials (one per pack), {len(errors)} errored, "
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


def _record_trial_errors(cfg: ExperimentConfig, errors: list) -> None:
    """Trials Tune gave up on (a transient error repeated past ``sweep.max_failures`` retries,
    or a dead worker): their runs without a row are recorded as failed (``record_unfinished``)."""
    for r in errors:
        reason = f"trial failed after sweep.max_failures={cfg.sweep.max_failures} retries: "
        record_unfinished(cfg, trial_runs(r.config or {}), reason + failures.reason_of(r.error, last=True), r.error)


def _check_rows(cfg: ExperimentConfig, store, planned: list[PlannedRun], path: Path) -> list[dict]:
    """The planned runs' rows; a run without a row or a failure record is reported (a
    scheduler stopped it, or its trial ended without saying why: see the Tune experiment)."""
    rows = rows_of(store, planned)
    have = {r["run_id"] for r in rows}
    failed = {f["key"] for f in failures.read_failures(store.root, [p.run.to_dict() for p in planned])}
    unexplained = [p for p in planned if p.run_id not in have and failures.run_key(p.run.to_dict()) not in failed]
    if unexplained and cfg.sweep.scheduler == "none":
        logger.warning(
            f"[sweep] {len(unexplained)} planned run(s) have no result row and no failure record "
            f"(e.g. {failures.run_label(unexplained[0].run.to_dict())}); see the Tune experiment {path}, then re-run"
        )
    elif unexplained:
        logger.info(
            f"[sweep] {len(unexplained)} runs were stopped early by the {cfg.sweep.scheduler} scheduler (no result row)"
        )
    return rows
