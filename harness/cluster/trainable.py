"""The Tune trainable of the sweep: one trial distills one pack of students.

``distill_trial`` runs the core ``distill_pack`` with an ``on_epoch`` hook (``TrialReporter``)
that calls ``tune.report`` every epoch, with the pack's means and each member's own metrics and
identity under ``runs`` (``harness.cluster.tune_runs.runs_frame`` turns Tune's results into one
row per run), and saves the pack's state to ``student_state.pt`` in the trial's folder every
``sweep.checkpoint_every`` epochs, so a retried or restored trial continues where it stopped.
A member that cannot train is recorded (``harness/failures.py``) and its pack-mates go on; a
deterministic error ends the trial normally (recorded), so Tune retries only transient ones.
Trials are named for what they hold (``trial_name``). Each trial logs to ``distill.log`` in its
trial folder; each run trains under its lease (``harness/leases.py``).
"""

from __future__ import annotations

import copy
import logging
import os
import re
from pathlib import Path

from harness import failures, process_memo
from harness.config import ExperimentConfig
from harness.distill import distill_pack
from harness.experiment import open_store, set_threads, stage_threads
from harness.fileio import StoredFileError, UnsafeFileError, atomic_write_bytes, read_regular_bytes, safe_torch_load
from harness.logs import file_log
from harness.objects import ObjectPath
from harness.runs import Run, RunResolver, teachers_text
from harness.store import CHECKPOINT_MAX_BYTES, StoreError
from harness.sweep import describe_pack, trial_runs

logger = logging.getLogger("harness.cluster.sweep")  # the trials' lines keep the sweep's logger name
METRIC, MODE = "val_acc", "max"
STATE_FILE = "student_state.pt"


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+:,-]+", "_", text).strip("_")


def trial_name(trial) -> str:
    """What the trial holds: ``<choice>-<student>-s<seed>-T<T>-w<w>`` for one run; for a pack
    ``<student>-<n>runs-<choices joined by +>-s<seeds>``; then the trial id."""
    return _sanitize(f"{pack_name(trial_runs(trial.config))}-{trial.trial_id}")


def pack_name(runs: list[dict], width: int = 60) -> str:
    """A short name for the runs of a trial (``trial_name`` without the id)."""
    if len(runs) == 1:
        r = runs[0]
        return (
            f"{r.get('teacher_choice')}-{r.get('student_arch')}-s{r.get('seed')}-"
            f"T{r.get('temperature')}-w{r.get('kd_weight')}"
        )
    choices = list(dict.fromkeys(str(r.get("teacher_choice")) for r in runs))
    shown = ""
    for i, c in enumerate(choices):
        more = f"+{len(choices) - i}more"
        if len(shown) + len(c) + 1 > width:
            shown += more
            break
        shown += ("+" if shown else "") + c
    seeds = sorted({int(r.get("seed", 0)) for r in runs})
    span = (
        f"{seeds[0]}-{seeds[-1]}"
        if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1
        else (",".join(map(str, seeds[:6])) + ("..." if len(seeds) > 6 else ""))
    )
    archs = "+".join(dict.fromkeys(str(r.get("student_arch")) for r in runs))
    return f"{archs}-{len(runs)}runs-{shown}-s{span}"


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def trial_storage_dir(ctx, cfg: ExperimentConfig) -> Path | ObjectPath:
    """The trial's folder in the Tune experiment under ``<storage>`` (shared by all nodes), not
    the node-local working dir that ``get_trial_dir()`` gives; a prefix of the object store when
    ``storage`` is one (Tune's ``trial_fs_path`` is then the key, without its scheme)."""
    root = open_store(cfg).root
    try:
        if isinstance(root, ObjectPath):
            return ObjectPath(root.protocol, ctx.get_storage().trial_fs_path)
        path = Path(ctx.get_storage().trial_fs_path)
        if path.is_absolute():
            return path
    except Exception:
        pass
    return Path(ctx.get_trial_dir())


def distill_trial(config: dict, cfg: ExperimentConfig | None = None) -> None:
    """Tune function trainable: distill the pack of ``config``, report every epoch (the pack's
    means and each member's own metrics under ``runs``). A member that cannot train is recorded
    (``harness/failures.py``) and its pack-mates go on; an error that would repeat on a retry
    (``failures.is_deterministic``) is recorded for the runs still without a row and the trial
    ends normally, so Tune retries only transient failures (``sweep.max_failures``)."""
    import ray
    from ray import tune

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no "checkpoint created" line per epoch
    process_memo.enable()  # this worker's next trials reuse the verified data and teacher logits
    runs = trial_runs(config)
    threads = set_threads(cfg, "trial")  # cfg: trial_config's, shared by the worker's trials, never modified
    ctx = tune.get_context()
    trial_dir = trial_storage_dir(ctx, cfg)
    with file_log(trial_dir / "distill.log"):
        logger.info(
            f"[trial {ctx.get_trial_name()}] pid {os.getpid()} on node "
            f"{ray.get_runtime_context().get_node_id()}, {threads} torch thread(s); "
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
        members = [Run.from_dict(cfg, r) for r in runs]
        try:
            rows = distill_pack(
                cfg,
                members,
                on_epoch=reporter.on_epoch,
                resume=_load_trial_state(trial_dir, ctx.get_trial_name()),
                row_fields=fields,
            )
        except Exception as e:
            if not failures.is_deterministic(e):
                raise  # Tune retries the trial from its state file
            rows = record_unfinished(cfg, runs, failures.reason_of(e), e)
        reporter.finish(rows)


def trial_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """What every trial receives (``tune.with_parameters``): the config without the grid's lists
    (``sweep.teacher_choices``, ``temperature``, ``kd_weight``, archs; ``seeds`` too where the
    trials' entries name their teacher seed, i.e. grid and random search), and with the trial's
    torch threads set, so a trial neither unpickles the grid nor copies the config. A trial's
    runs come in its own Tune config (``trial_runs``); nothing of a run's id or row depends on
    the lists (``RunResolver``, ``ResultRow``)."""
    slim = copy.deepcopy(cfg)
    slim.threads = stage_threads(cfg, "trial")
    for key in ("teacher_choices", "temperature", "kd_weight", "student_archs", "teacher_archs"):
        setattr(slim.sweep, key, [])
    if cfg.sweep.search in ("grid", "random"):
        slim.sweep.seeds = []
    return slim


def record_unfinished(cfg: ExperimentConfig, runs: list[dict], reason: str, error: BaseException) -> list[dict | None]:
    """Every run of ``runs`` (trial config entries) still without a row is recorded as failed
    with ``error``'s traceback (in the experiment's ``failures/`` folder) and one console line;
    their rows (None where failed). For an error outside any one member (data, state file) and
    for trials Tune gave up on."""
    store, resolver = open_store(cfg), RunResolver(cfg)
    rows: list[dict | None] = []
    for run in runs:
        got = resolver.resolve_or_reason(Run.from_dict(cfg, run))
        row = None if isinstance(got, str) else store.results.find(got.run_id)
        if row is None:
            entry = failures.record(store.root, run, "failed", reason, stage="sweep", error=error)
            logger.error(f"[sweep] FAILED {entry['label']}: {reason} (traceback: {store.root}/{entry['log']})")
        rows.append(row)
    return rows


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

    Each report holds the pack's means (what a scheduler ranks; a pack of one: the run's own) and
    every member's metrics and identity under ``runs`` (``{"0": {...}, ...}``, flattened by Tune
    to ``runs/0/val_acc``): ``harness.cluster.tune_runs.runs_frame`` turns a ResultGrid into one
    row per run. Not Tune checkpoints: with ``CheckpointConfig(num_to_keep)`` Tune forces an
    experiment-state snapshot (O(trials)) every few checkpoints of every trial, O(trials^2) per
    sweep. The last epoch's report is held back until the result rows are written: a scheduler
    may stop the trial at its last report.
    """

    def __init__(self, state_path: Path, every: int, epochs: int) -> None:
        self.state_path, self.every, self.epochs = state_path, every, epochs
        self.reported: list[int] = []
        self.final: list[dict] = []

    def on_epoch(self, metrics: dict, state: dict) -> None:
        from ray import tune

        from harness.store import torch_bytes

        m = _report_of(metrics)
        epoch = int(metrics["epoch"])
        self.reported.append(epoch)
        if epoch == self.epochs:
            self.final.append(m)
            return
        if epoch % self.every == 0:
            atomic_write_bytes(self.state_path, torch_bytes(state))
        tune.report(m)

    def finish(self, rows: list[dict | None]) -> None:
        """The last report: each member's final metrics from its result row (failed members:
        ``failed`` = 1), the pack's means over the members that have a row."""
        from ray import tune

        done = [r for r in rows if r is not None]
        if self.final and len(done) == len(rows):
            tune.report(self.final[0])
            return
        mean = (lambda key: sum(r[key] for r in done) / len(done)) if done else (lambda key: float("nan"))
        tune.report(
            {
                "epoch": done[0].get("epochs", self.epochs) if done else 0,
                METRIC: mean("final_val_acc"),
                "test_acc": mean("final_test_acc"),
                "best_val_acc": mean("best_val_acc"),
                "members": len(rows),
                "failed": len(rows) - len(done),
                "from_results": int(not self.final),
                "runs": {str(i): _row_report(r) for i, r in enumerate(rows)},
            }
        )


def _report_of(metrics: dict) -> dict:
    """A Tune report from ``distill_pack``'s epoch metrics: the numbers, and ``runs`` by index."""
    out = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out["runs"] = {str(i): dict(m) for i, m in enumerate(metrics.get("runs", []))}
    return out


def _row_report(row: dict | None) -> dict:
    """One member's final report from its result row (None: it failed or was skipped)."""
    if row is None:
        return {"failed": 1}
    return {
        "run_id": row["run_id"],
        "label": failures.run_label(row),
        "teachers": teachers_text(row.get("teacher_checkpoints")),
        "epoch": row.get("epochs"),
        METRIC: row["final_val_acc"],
        "test_acc": row["final_test_acc"],
        "best_val_acc": row["best_val_acc"],
        "failed": 0,
    }
