"""Weights & Biases adapter behind a tiny interface; ``wandb`` and ``ray`` are imported lazily.

``cfg.tracking.mode`` picks ``disabled`` (every function is a no-op that imports nothing),
``offline`` (the default for runs: W&B writes run folders locally and never contacts a server;
upload them later with ``wandb sync``) or ``online``. The environment variable ``WANDB_MODE`` can
only make tracking *more* restrictive than the config: ``WANDB_MODE=disabled`` switches it off
(the test suite sets this), ``WANDB_MODE=offline`` turns ``online`` into ``offline``.

Everything W&B writes goes under ``wandb_dir(cfg) = <storage>/<name>/wandb`` (we pass
``dir=<storage>/<name>`` to ``wandb.init``, and W&B adds the ``wandb/`` folder itself), so the
offline runs of an experiment sit next to its checkpoints:
``<storage>/<name>/wandb/offline-run-<time>-<id>/``; ``offline_run_dirs(cfg)`` lists them and
``sync_command(cfg)`` prints the ``wandb sync`` line that uploads them.

On an object store ``wandb_dir(cfg)`` is node-local (``$CKD_NODE_CACHE/wandb/<storage hash>/<name>/wandb``)
and ``upload_run`` copies each finished run folder file by file to ``<storage>/<name>/wandb/``: copy
that prefix down and ``wandb sync`` works as usual (``sync_command``). Markers live in the store.

Runs of the harness:
- students: one run per student, named ``<choice>/<student>/s<seed>`` and logged epoch by epoch
  while it trains (``harness/tracking_live.py``; on Ray fed by the Tune callback
  ``harness.cluster.sweep_tracking.StudentRuns`` on the driver: no per-trial W&B actors);
  ``log_student_row(cfg, row)`` for ``ckd distill``'s one student; ``log_student_run`` writes a
  run in one go from a history; grouped by experiment, tagged by teacher choice (see below);
- teachers: ``log_trajectory(cfg, manifest)``, one run per trajectory (job_type ``teacher``):
  the per-epoch curve from ``manifest['history']`` plus the metrics of every saved checkpoint;
- scores and the report: ``harness.tracking_tables`` (``log_scores``, ``log_leaderboard``).
Runs other than sweep trials are idempotent: a marker under ``wandb_dir/.logged/`` remembers a
fingerprint of what was logged, so re-running a stage does not create duplicate W&B runs
(``force=True`` logs again). Tracking never stops the pipeline: a W&B error is logged and the
function returns None. ``harness.pipeline`` calls these once per stage, whichever side ran it.

Per-trial tags: (1) the values of ``tag_keys`` looked up in the trial's config (default
``teacher_choice``; a key matches at the top level, as a dotted path, or as the last component of
a nested key) and (2) anything under the trial config's ``wandb`` key (a dict of ``wandb.init``
arguments, e.g. ``{"tags": [...], "notes": ...}``; its ``tags`` are added to the others). The
``wandb`` key itself is left out of the logged run config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from harness.config import ExperimentConfig, to_dict
from harness.objects import ObjectPath, location, node_local_dir
from harness.tracking_online import find_online_blocker

MODES = ("disabled", "offline", "online")
_STRICTNESS = {"online": 0, "offline": 1, "disabled": 2, "dryrun": 1}
MAX_TAG_LEN = 64  # W&B rejects longer tags

# Keep wandb.init fast and quiet, and off the network in offline mode: no console capture,
# no system-metrics sampler, no host/git/code/requirements snapshot.
FAST_SETTINGS: dict[str, Any] = {
    "silent": True,
    "console": "off",
    "x_disable_stats": True,
    "x_disable_meta": True,
    "x_disable_machine_info": True,
    "disable_git": True,
    "disable_code": True,
    "save_code": False,
    "x_save_requirements": False,
    "disable_job_creation": True,
}

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# mode and places


def tracking_mode(cfg: ExperimentConfig) -> str:
    """The effective mode: the config's, made stricter (never looser) by ``WANDB_MODE``; ``online``
    without an API key or without a reachable server falls back to ``offline`` (one warning)."""
    mode = str(cfg.tracking.mode)
    if mode not in MODES:
        raise ValueError(f"config key 'tracking.mode': unknown mode {mode!r}; known: {', '.join(MODES)}")
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in _STRICTNESS and _STRICTNESS[env] > _STRICTNESS[mode]:
        return "offline" if env == "dryrun" else env
    if mode == "online":
        reason = online_blocker()
        if reason is not None:
            _warn_offline(reason)
            return "offline"
    return mode


_WARNED: set[str] = set()
_ONLINE_CHECKS: dict[str, str | None] = {}
ONLINE_PROBE_TIMEOUT_S = 10.0  # total: connect, TLS, request and the response's status line (issue 18: <= 15 s)
ONLINE_INIT_TIMEOUT_S = 15.0  # wandb.init's own wait in online mode (W&B's default is 90 s)


def online_blocker() -> str | None:
    """Why W&B cannot go online from here (no API key, server unreachable or not answering), or
    None. Checked once per process with a bounded total wait, so an offline cluster, or a server
    that accepts connections and never answers, never waits on W&B's own retries."""
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    if base not in _ONLINE_CHECKS:
        _ONLINE_CHECKS[base] = find_online_blocker(base, ONLINE_PROBE_TIMEOUT_S)
    return _ONLINE_CHECKS[base]


def give_up_online(reason: str) -> None:
    """Log offline for the rest of this process (W&B failed online: ``reason``); warns once."""
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    _ONLINE_CHECKS[base] = reason
    _warn_offline(reason)


def _warn_offline(reason: str) -> None:
    if reason not in _WARNED:
        _WARNED.add(reason)
        logger.warning(
            f"[tracking] tracking.mode=online but {reason}; logging offline instead (upload later with `wandb sync`)"
        )


def enabled(cfg: ExperimentConfig) -> bool:
    return tracking_mode(cfg) != "disabled"


def _store_root(cfg: ExperimentConfig) -> Path | ObjectPath:
    """``<storage>/<name>``: an absolute folder, or a prefix on an object store."""
    root = location(str(cfg.storage)) / str(cfg.name)
    return root if isinstance(root, ObjectPath) else root.expanduser().resolve()


def _experiment_root(cfg: ExperimentConfig) -> Path:
    """Where W&B writes: ``<storage>/<name>``, or a node-local folder for an object store."""
    if not isinstance(root := _store_root(cfg), ObjectPath):
        return root
    digest = hashlib.sha256(str(root.parent).encode()).hexdigest()[:12]  # one folder per storage URI
    return node_local_dir("wandb") / digest / str(cfg.name)


def wandb_dir(cfg: ExperimentConfig) -> Path:
    """``<storage>/<name>/wandb`` (absolute, created; node-local for an object store): where W&B writes."""
    d = _experiment_root(cfg) / "wandb"
    d.mkdir(parents=True, exist_ok=True)
    return d


def offline_run_dirs(cfg: ExperimentConfig) -> list[Path | ObjectPath]:
    """The offline run folders of the experiment (``offline-run-*``, on an object store the uploaded
    ones), oldest first; what ``wandb sync`` uploads. Creates nothing."""
    d = _store_root(cfg) / "wandb"
    if isinstance(d, ObjectPath):
        return sorted(d.glob("offline-run-*"))
    if not d.is_dir():
        return []
    runs = [p for p in d.rglob("offline-run-*") if p.is_dir() and not p.is_symlink()]
    return sorted(runs, key=lambda p: (p.stat().st_mtime, str(p)))


def sync_command(cfg: ExperimentConfig) -> str | None:
    """The shell line that uploads the experiment's offline runs, or None when there are none."""
    runs = offline_run_dirs(cfg)
    if not runs:
        return None
    stored = _store_root(cfg) / "wandb"
    if isinstance(stored, ObjectPath):  # copy the prefix down, then sync the local copy
        s3, local = stored.protocol in ("s3", "s3a"), f"wandb-{stored.parent.name}"
        copy = f"aws s3 cp --recursive s3://{stored.key}" if s3 else f"gcloud storage cp -r {stored}"
        return f"{copy} {local} && wandb sync {local}/offline-run-*   # {len(runs)} offline run(s)"
    return f"wandb sync {stored}/offline-run-*   # {len(runs)} offline run(s)"


def upload_run(cfg: ExperimentConfig, run_dir: Path | None) -> Path | ObjectPath | None:
    """On an object store, upload a finished run folder file by file (one PUT each) to
    ``<storage>/<name>/wandb/<run folder>/...``, remove the local copy, return the stored folder;
    a failed upload is logged (never raised) and keeps it. A folder store: ``run_dir`` as it is."""
    root = _store_root(cfg)
    if run_dir is None or not isinstance(root, ObjectPath):
        return run_dir
    from harness.fileio import atomic_write_bytes  # fileio imports torch: not at import time

    target = root / "wandb" / run_dir.name
    try:
        for f in sorted(run_dir.rglob("*")):
            if f.is_file() and not f.is_symlink():  # W&B's own files are plain files
                atomic_write_bytes(target / f.relative_to(run_dir).as_posix(), f.read_bytes())
    except Exception as e:  # tracking must never stop the pipeline
        logger.warning(f"[tracking] cannot upload W&B run {run_dir} to {target} ({e}); it stays in {run_dir}")
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    return target


def init_kwargs(cfg: ExperimentConfig, **extra: Any) -> dict:
    """Arguments for ``wandb.init`` shared by every run of the experiment."""
    kw: dict[str, Any] = {
        "project": str(cfg.tracking.project),
        "group": str(cfg.name),
        "dir": str(wandb_dir(cfg).parent),  # W&B writes into <dir>/wandb
        "mode": tracking_mode(cfg),
        "settings": dict(FAST_SETTINGS),
    }
    if kw["mode"] == "online":  # a server that stalls after the probe: give up in seconds, not 90
        kw["settings"]["init_timeout"] = ONLINE_INIT_TIMEOUT_S
    entity = getattr(cfg.tracking, "entity", None)
    if entity:
        kw["entity"] = str(entity)
    kw.update(extra)
    return kw


def import_wandb():
    """``wandb``, imported quietly (only when tracking is on: the core never needs it)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    return wandb


# ---------------------------------------------------------------------------------------------
# sweep trials


def _lookup(config: dict, key: str) -> Any:
    """``key`` in a (nested) trial config: top-level, dotted/slashed path, or last component."""
    if key in config:
        return config[key]
    parts = key.replace("/", ".").split(".")
    node: Any = config
    for p in parts:
        if isinstance(node, dict) and p in node:
            node = node[p]
        else:
            node = None
            break
    if node is not None:
        return node
    stack = [config]
    while stack:
        d = stack.pop(0)
        for k, v in d.items():
            if k == parts[-1] and not isinstance(v, dict):
                return v
            if isinstance(v, dict) and k != "wandb":
                stack.append(v)
    return None


def trial_tags(config: dict, tag_keys: Sequence[str] = ("teacher_choice",), base: Sequence[str] = ()) -> list[str]:
    """Tags of one trial: ``base`` + the values of ``tag_keys`` in its config + ``config['wandb']['tags']``."""
    tags = list(base)
    for key in tag_keys:
        value = _lookup(config, key)
        if value is not None:
            tags.append(str(value))
    extra = config.get("wandb") if isinstance(config.get("wandb"), dict) else {}
    extra_tags = extra.get("tags") or []
    tags += [extra_tags] if isinstance(extra_tags, str) else list(extra_tags)
    out: list[str] = []
    for t in tags:
        t = str(t)[:MAX_TAG_LEN]
        if t and t not in out:
            out.append(t)
    return out


def log_student_run(
    cfg: ExperimentConfig, name: str, config: dict, history: list[dict], tags: Sequence[str] = (), failed: bool = False
) -> Path | None:
    """One sweep trial as one W&B run, written in one go when the trial ends (job_type
    ``student``, grouped by experiment, tagged with its teacher choice): its config, one step per
    reported epoch, and the last values as the summary. About 60 ms offline, in the driver; no
    per-trial actors. Every call is a new run (a retried trial is logged once, when it ends)."""
    config = dict(config)
    extra = dict(config.pop("wandb", None) or {}) if isinstance(config.get("wandb"), dict) else {}
    init = {
        "name": name,
        "config": config,
        "job_type": "student",
        "tags": trial_tags(config, base=[*(["failed"] if failed else []), *(extra.pop("tags", None) or [])]),
        **extra,
    }

    def body(wandb, run) -> None:
        for step, metrics in enumerate(history, 1):
            run.log({k: v for k, v in metrics.items() if is_scalar(v)}, step=int(metrics.get("epoch", step)))

    return logged_run(cfg, f"student-{name}", None, body, init, force=True, remember=False)


def student_curve(row: dict) -> list[dict]:
    """A result row's per-epoch accuracies as the steps of its W&B run; ``test_acc`` only at
    the epochs it was evaluated on (null in the row's curve: not a step value)."""
    val, test = row.get("val_acc_per_epoch") or [], row.get("test_acc_per_epoch") or []
    test = list(test) + [None] * (len(val) - len(test))
    return [
        {"epoch": e + 1, "val_acc": v, **({} if t is None else {"test_acc": t})}
        for e, (v, t) in enumerate(zip(val, test))
    ]


def log_student_row(cfg: ExperimentConfig, row: dict) -> Path | None:
    """A student trained in this process (``ckd sweep --local``, ``ckd run --local``, ``ckd distill``)
    as one W&B run named ``<choice>/<student>/s<seed>``, like a sweep's: the resolved config and its
    row's scalars (run id included) as the config, its curve as the steps. Logged once per run id
    (a re-run logs nothing)."""
    if not enabled(cfg):
        return None
    run_id = str(row.get("run_id"))
    config = {**to_dict(cfg), **{k: v for k, v in row.items() if is_scalar(v)}}
    from harness.failures import run_label

    init = {"name": run_label(row), "config": config, "job_type": "student", "tags": trial_tags(row)}
    curve = student_curve(row)

    def body(wandb, run) -> None:
        for metrics in curve:
            run.log(metrics, step=metrics["epoch"])

    return logged_run(cfg, f"student-{run_id}", run_id, body, init, force=False)


# ---------------------------------------------------------------------------------------------
# runs for teachers, scores, the leaderboard


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _marker(cfg: ExperimentConfig, key: str) -> Path | ObjectPath:
    """``wandb/.logged/<key>.json`` in the store (on an object store too: every node sees it)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    root = _store_root(cfg)
    return (root / "wandb" if isinstance(root, ObjectPath) else wandb_dir(cfg)) / ".logged" / f"{safe}.json"


def _logged_already(cfg: ExperimentConfig, key: str, fingerprint: str) -> bool:
    from harness.fileio import ROW_MAX_BYTES, read_regular_text  # fileio imports torch: not at import time

    try:
        marker = read_regular_text(_marker(cfg, key), ROW_MAX_BYTES, "W&B marker")  # no FIFO or link followed
        return json.loads(marker).get("fingerprint") == fingerprint
    except (OSError, ValueError, AttributeError):
        return False


def _mark_logged(cfg: ExperimentConfig, key: str, fingerprint: str, run_dir: Path | ObjectPath | None) -> None:
    from harness.fileio import atomic_write_bytes  # fileio imports torch: not at import time

    marker = json.dumps({"fingerprint": fingerprint, "run_dir": str(run_dir) if run_dir else None})
    atomic_write_bytes(_marker(cfg, key), marker.encode())


def is_scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def run_dir_of(run) -> Path | None:
    """The local folder W&B writes ``run`` into (``offline-run-...``), or None."""
    try:
        return Path(run.dir).parent
    except Exception:
        return None


def logged_run(
    cfg: ExperimentConfig,
    key: str,
    fingerprint_of: Any,
    body: Callable[[Any, Any], None],
    init: dict,
    force: bool,
    remember: bool = True,
) -> Path | ObjectPath | None:
    """Open one W&B run, let ``body(wandb, run)`` log into it, finish, upload and remember it."""
    if not enabled(cfg):
        return None
    fp = _fingerprint(fingerprint_of)
    if not force and _logged_already(cfg, key, fp):
        return None
    mode = tracking_mode(cfg)
    run = _log_once(cfg, key, body, init)
    if run is None and mode == "online" and tracking_mode(cfg) == "offline":
        run = _log_once(cfg, key, body, init)  # W&B failed online: this run again, offline
    if run is None:
        return None
    run_dir = upload_run(cfg, run_dir_of(run))
    if remember:
        _mark_logged(cfg, key, fp, run_dir)
    return run_dir


def _log_once(cfg: ExperimentConfig, key: str, body: Callable[[Any, Any], None], init: dict) -> Any:
    """One W&B run: init, ``body``, finish; the run, or None when W&B failed (logged, never raised).
    A failure online makes the rest of the process log offline (``give_up_online``)."""
    run = None
    mode = tracking_mode(cfg)
    try:
        wandb = import_wandb()
        run = wandb.init(**init_kwargs(cfg, reinit="create_new", **init))
        body(wandb, run)
        run.finish()
        return run
    except Exception as e:  # tracking must never stop the pipeline
        logger.info("[tracking] W&B logging of %s failed (%s: %s); continuing without it", key, type(e).__name__, e)
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:
                pass
        if mode == "online":
            detail = str(e).strip()[:200]
            give_up_online(f"W&B failed online ({type(e).__name__}{': ' + detail if detail else ''})")
        return None


TRAJECTORY_META = ("name", "arch", "dataset", "seed", "epochs", "checkpoint_every", "config_hash")
TRAJECTORY_META += ("num_params", "device", "finished")  # manifest keys in a teacher run's W&B config


def log_trajectory(cfg: ExperimentConfig, manifest: dict, force: bool = False) -> Path | None:
    """One W&B run per teacher trajectory: per-epoch curve + checkpoint metrics and table.

    Returns the run folder (None when disabled, already logged, or W&B failed).
    """
    if not enabled(cfg):
        return None
    name = str(manifest.get("name", "trajectory"))
    ckpts = list(manifest.get("checkpoints") or [])
    config = {k: manifest[k] for k in TRAJECTORY_META if k in manifest}
    if isinstance(manifest.get("config"), dict):
        config["trajectory_config"] = manifest["config"]
    tags = ["teacher"] + [str(manifest[k]) for k in ("arch", "dataset") if manifest.get(k) is not None]
    fingerprint = {
        "name": name,
        "finished": manifest.get("finished"),
        "epochs": len(manifest.get("history") or []),
        "ckpts": [c.get("sha256") for c in ckpts],
    }
    init = {"job_type": "teacher", "name": name, "tags": tags, "config": config}
    return logged_run(cfg, f"trajectory-{name}", fingerprint, partial(_trajectory_body, manifest), init, force)


def _numeric_columns(ckpts: list[dict]) -> list[str]:
    """The checkpoint metrics (numbers, not flags) any checkpoint records, sorted."""
    return sorted(
        {
            k
            for c in ckpts
            for k, v in c.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )


def _trajectory_body(manifest: dict, wandb, run) -> None:
    """Log a trajectory's curve (history and ``ckpt/`` metrics per epoch), its checkpoint table
    and final metrics into ``run``."""
    history, ckpts = list(manifest.get("history") or []), list(manifest.get("checkpoints") or [])
    run.define_metric("epoch")
    run.define_metric("*", step_metric="epoch")
    cols = _numeric_columns(ckpts)
    by_epoch: dict[int, dict] = {}
    for h in history:
        by_epoch.setdefault(int(h["epoch"]), {}).update(
            {k: v for k, v in h.items() if k != "epoch" and isinstance(v, (int, float))}
        )
    for c in ckpts:
        by_epoch.setdefault(int(c["epoch"]), {}).update({f"ckpt/{k}": c[k] for k in cols if k in c})
    for e in sorted(by_epoch):
        run.log({"epoch": e, **by_epoch[e]})
    if ckpts:
        rows = [[int(c["epoch"]), *[c.get(k) for k in cols], str(c.get("sha256", ""))[:12]] for c in ckpts]
        run.log({"checkpoints": wandb.Table(columns=["epoch", *cols, "sha256"], data=rows)})
        run.summary.update({f"final/{k}": ckpts[-1][k] for k in cols if k in ckpts[-1]})
    if "wall_time_s" in manifest:
        run.summary["wall_time_s"] = manifest["wall_time_s"]


def report_offline_runs(cfg: ExperimentConfig) -> list[Path | ObjectPath]:
    """Log where the offline runs are and how to upload them; return their folders."""
    runs = offline_run_dirs(cfg) if tracking_mode(cfg) == "offline" else []
    if runs:
        logger.info(
            "[tracking] %d W&B offline run(s) in %s; upload with:\n  %s",
            len(runs),
            _store_root(cfg) / "wandb",
            sync_command(cfg).split("   #")[0],
        )
    return runs
