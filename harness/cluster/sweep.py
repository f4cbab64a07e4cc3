"""The Ray Tune sweep: one trial = one student distilled from one teacher choice.

Grid (``sweep_runs``): teacher arch x student arch x teacher choice x temperature x kd_weight x
student seed, where ``every_checkpoint`` expands to ``epoch:E`` for every saved epoch and
``none`` (no teacher) is not repeated over temperatures and weights. With
``sweep.teacher_seeds=paired`` the student of the i-th seed learns from the trajectory of
``teacher.seeds[i % n]``. ``sweep.search``: grid (every run, ``num_samples`` times), random
(``num_samples`` draws from the grid), optuna / hyperopt (when installed); ``sweep.scheduler``:
none or ASHA on ``val_acc``.

Trainable (``distill_trial``): the core ``distill_student`` with an ``on_epoch`` hook that calls
``tune.report(metrics, checkpoint=...)`` every epoch (a checkpoint every
``sweep.checkpoint_every`` epochs), and ``resume=`` the state in ``tune.get_checkpoint()``, so a
trial retried by ``FailureConfig(max_failures)`` continues where it stopped. Hyperparameters are
ranked on ``val_acc`` (``TuneConfig(metric="val_acc", mode="max")``); test accuracy is only
reported. ``distill_student`` appends the result row (deduplicated by run id) to
``results.jsonl``/``results.csv``; the trial then adds its Tune identity (trial id, name,
experiment dir) to that row.

Idempotence: a grid whose every run is already in the results file is not started at all; an
interrupted one is continued with ``Tuner.restore`` (the Tune experiment is named after a hash
of the grid, under ``<storage>/<name>/tune/``).
"""
from __future__ import annotations

import copy
import fcntl
import itertools
import json
import os
import re
import tempfile
import time
from pathlib import Path

from harness.cluster.connection import Log, _print, torch_threads
from harness.cluster.errors import SweepError
from harness.config import ConfigError, config_hash, to_dict
from harness.experiment import open_store

METRIC, MODE = "val_acc", "max"
STATE_FILE = "student_state.pt"
RUN_KEYS = ("teacher_arch", "teacher_seed", "student_arch", "teacher_choice", "temperature", "kd_weight", "seed")


# --------------------------------------------------------------------------- the grid

def expand_teacher_choices(cfg, teacher_arch: str) -> list[str]:
    """``sweep.teacher_choices`` with ``every_checkpoint`` expanded to ``epoch:E`` per saved epoch
    (from a finished trajectory's manifest; before training, from the checkpoint schedule)."""
    from harness.store import trajectory_name
    from harness.teachers import checkpoint_epochs

    out: list[str] = []
    for choice in cfg.sweep.teacher_choices:
        if choice != "every_checkpoint":
            out.append(str(choice))
            continue
        epochs = None
        store = open_store(cfg)
        for seed in cfg.teacher.seeds:
            traj = store.trajectory(trajectory_name(teacher_arch, cfg.data.name, seed))
            if traj.is_finished():
                epochs = traj.finished_epochs()
                break
        if epochs is None:
            epochs = checkpoint_epochs(int(cfg.teacher.epochs), int(cfg.teacher.checkpoint_every))
        out += [f"epoch:{e}" for e in epochs]
    return list(dict.fromkeys(out))  # dedupe, keep order


def teacher_seed_for(cfg, seed_index: int) -> int:
    seeds = list(cfg.teacher.seeds)
    if cfg.sweep.teacher_seeds == "paired":
        return int(seeds[seed_index % len(seeds)])
    return int(cfg.distill.teacher_seed if cfg.distill.teacher_seed is not None else seeds[0])


def sweep_runs(cfg) -> list[dict]:
    """Every run of the grid, as flat dicts of ``RUN_KEYS`` (stable order, no duplicates)."""
    teacher_archs = list(cfg.sweep.teacher_archs) or list(cfg.teacher.archs)
    student_archs = list(cfg.sweep.student_archs) or list(cfg.student.archs)
    runs: list[dict] = []
    seen: set[str] = set()
    for ta, sa in itertools.product(teacher_archs, student_archs):
        for choice in expand_teacher_choices(cfg, ta):
            hps = [(float(cfg.sweep.temperature[0]), 0.0)] if choice == "none" else list(
                itertools.product([float(t) for t in cfg.sweep.temperature], [float(w) for w in cfg.sweep.kd_weight]))
            for (T, w), (i, seed) in itertools.product(hps, enumerate(cfg.sweep.seeds)):
                run = {"teacher_arch": ta, "teacher_seed": teacher_seed_for(cfg, i), "student_arch": sa,
                       "teacher_choice": choice, "temperature": T, "kd_weight": w, "seed": int(seed)}
                if choice == "none":  # no teacher: arch and teacher seed do not matter
                    run["teacher_arch"], run["teacher_seed"] = teacher_archs[0], teacher_seed_for(cfg, 0)
                key = json.dumps(run, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    runs.append(run)
    return runs


def apply_run(cfg, run: dict):
    """A copy of ``cfg`` whose ``distill`` section describes ``run`` (missing keys: the config's)."""
    out = copy.deepcopy(cfg)
    d = out.distill
    d.teacher_choice = str(run["teacher_choice"])
    d.teacher_arch = run.get("teacher_arch") or d.teacher_arch
    d.student_arch = run.get("student_arch") or d.student_arch
    d.seed = int(run.get("seed", d.seed))
    d.temperature = float(run.get("temperature", d.temperature))
    d.kd_weight = float(run.get("kd_weight", d.kd_weight))
    if run.get("teacher_seed") is not None:
        d.teacher_seed = int(run["teacher_seed"])
    else:
        seeds = list(cfg.sweep.seeds)
        d.teacher_seed = teacher_seed_for(cfg, seeds.index(d.seed) if d.seed in seeds else 0)
    return out


def plan(cfg, runs: list[dict] | None = None) -> list[dict]:
    """Resolve every run against the store (fails early, naming the run, if a teacher choice
    cannot be resolved) -> ``[{run, run_id, done}]``."""
    from harness.distill import resolve_run, run_id_of

    runs = sweep_runs(cfg) if runs is None else runs
    done_ids = {r.get("run_id") for r in open_store(cfg).read_results()}
    out = []
    for run in runs:
        rcfg = apply_run(cfg, run)
        try:
            resolved = resolve_run(rcfg)
        except (ValueError, RuntimeError) as e:  # StoreError/ScoresError: teachers or scores missing
            raise type(e)(f"sweep run {run['teacher_choice']} (teacher {run['teacher_arch']} s{run['teacher_seed']}, "
                          f"student {run['student_arch']} s{run['seed']}): {e}") from None
        rid = run_id_of(rcfg, resolved)
        out.append({"run": run, "run_id": rid, "done": rid in done_ids})
    return out


def grid_name(cfg, runs: list[dict], run_ids: list[str] | None = None) -> str:
    """Tune experiment name: ``sweep.name`` or ``sweep-<hash of the grid and the recipe>``. The
    run ids (which pin the resolved teacher checkpoints) are part of it, so a grid whose teachers
    or scores changed is a new experiment, never a restore of a stale one."""
    if cfg.sweep.name:
        return str(cfg.sweep.name)
    recipe = {"runs": runs, "student": to_dict(cfg.student), "data": to_dict(cfg.data),
              "teacher": {k: v for k, v in to_dict(cfg.teacher).items() if k != "seeds"},
              "search": cfg.sweep.search, "scheduler": cfg.sweep.scheduler, "num_samples": cfg.sweep.num_samples,
              "run_ids": run_ids}
    return f"sweep-{config_hash(recipe)[:10]}"


# --------------------------------------------------------------------------- the trainable

def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def trial_name(trial) -> str:
    run = trial.config.get("run", {})
    return _sanitize(f"{run.get('teacher_choice')}-T{run.get('temperature')}-w{run.get('kd_weight')}-"
                     f"{run.get('student_arch')}-s{run.get('seed')}-{trial.trial_id}")


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def annotate_result(store, run_id: str, fields: dict) -> bool:
    """Add ``fields`` (the trial's Tune identity) to the result row ``run_id`` in results.jsonl
    and results.csv, under the store's results lock; returns whether anything changed."""
    from harness.store import atomic_write_bytes

    store.root.mkdir(parents=True, exist_ok=True)
    with open(store.root / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = store.read_results()
        changed = False
        for r in rows:
            if r.get("run_id") == run_id and any(r.get(k) != v for k, v in fields.items()):
                r.update(fields)
                changed = True
        if changed:
            text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows)
            atomic_write_bytes(store.results_jsonl, text.encode())
            store.write_results_csv(rows)
    return changed


def _trial_storage_dir(ctx) -> Path:
    """The trial's folder in the Tune experiment under ``<storage>`` (shared by all nodes), not
    the node-local working dir that ``get_trial_dir()`` gives."""
    try:
        path = Path(ctx.get_storage().trial_fs_path)
        if path.is_absolute():
            return path
    except Exception:
        pass
    return Path(ctx.get_trial_dir())


def distill_trial(config: dict, cfg=None) -> None:
    """Tune function trainable: distill the student of ``config['run']``, report every epoch."""
    import logging

    import torch
    from ray import tune

    from harness.cluster.trajectories import file_logger
    from harness.distill import distill_student

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no "checkpoint created" line per epoch
    run = dict(config["run"])
    rcfg = apply_run(cfg, run)
    rcfg.threads = torch_threads(cfg.cluster.trial.cpus)
    torch.set_num_threads(rcfg.threads)
    ctx = tune.get_context()
    trial_id, name = ctx.get_trial_id(), ctx.get_trial_name()
    trial_dir = _trial_storage_dir(ctx)
    log = file_logger(trial_dir / "distill.log")
    import ray

    log(f"[trial {name}] pid {os.getpid()} on node {ray.get_runtime_context().get_node_id()}, {rcfg.threads} torch thread(s)")
    every = int(cfg.sweep.checkpoint_every)
    epochs = int(cfg.student.epochs)

    resume = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            resume = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
        log(f"[trial {name}] resuming from its checkpoint after epoch {len(resume['history'])}")

    reported: list[int] = []
    final: list[tuple[dict, dict]] = []

    def report(m: dict, state: dict | None) -> None:
        if state is None:
            tune.report(m)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, Path(d) / STATE_FILE)
            tune.report(m, checkpoint=tune.Checkpoint.from_directory(d))

    def on_epoch(metrics: dict, state: dict) -> None:
        m = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        epoch = int(metrics["epoch"])
        reported.append(epoch)
        if epoch == epochs:  # held back until the row is written: a scheduler may stop the trial at
            final.append((m, state))  # its last report, before distill_student appends the row
        else:
            report(m, state if epoch % every == 0 else None)

    row = distill_student(rcfg, log=log, on_epoch=on_epoch, resume=resume)
    fields = {"trial_id": trial_id, "trial_name": name, "tune_experiment": ctx.get_experiment_name(),
              "tune_trial_dir": str(trial_dir), "teacher_seeds_policy": str(cfg.sweep.teacher_seeds)}
    annotate_result(open_store(rcfg), row["run_id"], fields)
    if final:
        report(*final[0])
    elif not reported:  # done before (results file) or all epochs were in the checkpoint: report the row
        tune.report({"epoch": row.get("epochs", epochs), METRIC: row["final_val_acc"], "test_acc": row["final_test_acc"],
                     "best_val_acc": row["best_val_acc"], "from_results": 1})


# --------------------------------------------------------------------------- the Tuner

def _search_alg(cfg):
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
        raise ConfigError(f"config key 'sweep.search': {search!r} needs its package ({e}); pip install {search}, or use grid/random") from None
    if cfg.sweep.max_concurrent:
        from ray.tune.search import ConcurrencyLimiter

        alg = ConcurrencyLimiter(alg, max_concurrent=int(cfg.sweep.max_concurrent))
    return alg


def param_space(cfg, runs: list[dict]) -> dict:
    from ray import tune

    if cfg.sweep.search == "grid":
        return {"run": tune.grid_search(runs)}
    if cfg.sweep.search == "random":
        return {"run": tune.choice(runs)}
    # model-based searchers want flat categorical dimensions; the teacher seed follows the policy
    dims = {k: sorted({r[k] for r in runs}, key=str) for k in RUN_KEYS if k != "teacher_seed"}
    return {"run": {k: tune.choice(v) for k, v in dims.items()}}


def _trainable(session):
    from ray import tune

    cfg = session.cfg
    res = session.resources("trial")
    return tune.with_resources(tune.with_parameters(distill_trial, cfg=cfg), {"cpu": res["num_cpus"], "gpu": res["num_gpus"]})


def build_tuner(session, runs: list[dict], log: Log | None = None, run_ids: list[str] | None = None):
    """A new Tuner for ``runs``, or the restored one when the experiment dir holds it."""
    from ray import tune

    from harness import tracking

    cfg, log = session.cfg, (session.log if log is None else log)

    store = open_store(cfg)
    storage_path = store.root / "tune"
    name = grid_name(cfg, runs, run_ids)
    path = storage_path / name
    trainable = _trainable(session)
    if tune.Tuner.can_restore(str(path)):
        log(f"[sweep] resuming the Tune experiment {path} (Tuner.restore)")
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True), path
    scheduler = None
    if cfg.sweep.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=int(cfg.student.epochs),
                                  grace_period=min(int(cfg.sweep.grace_period), int(cfg.student.epochs)),
                                  reduction_factor=float(cfg.sweep.reduction_factor))
    search_alg = _search_alg(cfg)
    from harness.cluster.tune_progress import SweepProgress

    callbacks = [cb for cb in [SweepProgress(float(cfg.cluster.progress_interval_s), log, int(cfg.student.epochs)), tracking.wandb_callback(cfg)] if cb is not None]
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(cfg, runs),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, scheduler=scheduler, search_alg=search_alg,
            num_samples=int(cfg.sweep.num_samples),
            max_concurrent_trials=(int(cfg.sweep.max_concurrent) or None) if search_alg is None else None,
            reuse_actors=bool(cfg.sweep.reuse_actors),
            trial_name_creator=trial_name, trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage_path),
            failure_config=tune.FailureConfig(max_failures=int(cfg.sweep.max_failures)),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks, verbose=0, log_to_file=True,
        ),
    )
    return tuner, path


def run_sweep(session, log: Log | None = None) -> list[dict]:
    """``ckd sweep`` on Ray: plan, skip when done, fit (or restore), check; returns the result rows."""
    cfg, log = session.cfg, (session.log if log is None else log)
    runs = sweep_runs(cfg)
    planned = plan(cfg, runs) if cfg.sweep.search == "grid" else []
    store = open_store(cfg)
    if planned and all(p["done"] for p in planned) and cfg.sweep.num_samples == 1:
        log(f"[sweep] all {len(planned)} runs of the grid are in {store.results_csv}; nothing to run")
        return _rows_of(store, planned)
    if planned:
        todo = sum(not p["done"] for p in planned)
        log(f"[sweep] {len(planned)} runs in the grid, {todo} to train, {len(planned) - todo} done already")
    else:
        log(f"[sweep] {cfg.sweep.search} search: {cfg.sweep.num_samples} trials over {len(runs)} grid points")
    began = time.perf_counter()
    tuner, path = build_tuner(session, runs, log, [p["run_id"] for p in planned] or None)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    results = tuner.fit()
    errors = [r for r in results if r.error is not None]
    log(f"[sweep] Tune experiment {path}: {len(results)} trials, {len(errors)} errored, "
        f"{time.perf_counter() - began:.1f}s")
    if errors:
        lines = []
        for r in errors[:5]:
            run = (r.config or {}).get("run", {})
            first = str(r.error).strip().splitlines()
            lines.append(f"{run.get('teacher_choice')} s{run.get('seed')}: {first[-1] if first else r.error} (logs: {r.path})")
        raise SweepError(
            f"{len(errors)} sweep trial(s) failed after sweep.max_failures={cfg.sweep.max_failures} retries: "
            + "; ".join(lines) + ". Fix the cause and re-run: the sweep resumes (Tuner.restore) and finished trials are kept"
        )
    if planned:
        rows = _rows_of(store, planned)
        missing = len({p["run_id"] for p in planned}) - len(rows)
        if missing and cfg.sweep.scheduler == "none":
            raise SweepError(f"{missing} planned runs have no result row in {store.results_jsonl} although no trial "
                             f"failed; see the Tune experiment {path}, then re-run")
        if missing:
            log(f"[sweep] {missing} runs were stopped early by the {cfg.sweep.scheduler} scheduler (no result row)")
        return rows
    return store.read_results()


def _rows_of(store, planned: list[dict]) -> list[dict]:
    ids = {p["run_id"] for p in planned}
    return [r for r in store.read_results() if r.get("run_id") in ids]


def run_sweep_local(cfg, log: Log = _print) -> list[dict]:
    """The same grid in this process, one run after another (no Ray, no Tune)."""
    from harness.distill import distill_student

    if cfg.sweep.search != "grid":
        raise ConfigError("config key 'sweep.search': only grid runs without Ray (cluster.mode=local)")
    if cfg.sweep.scheduler != "none":
        log("[sweep] note: sweep.scheduler is ignored without Ray (every run trains to the end)")
    planned = plan(cfg)
    todo = [p for p in planned if not p["done"]]
    log(f"[sweep] {len(planned)} runs in the grid, {len(todo)} to train in this process")
    for i, p in enumerate(todo, 1):
        log(f"[sweep] run {i}/{len(todo)}: {p['run']}")
        distill_student(apply_run(cfg, p["run"]), log=log)
    return _rows_of(open_store(cfg), planned)
