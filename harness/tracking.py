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

Runs of the harness:
- sweep trials: ``log_student_run(cfg, name, config, history)``, one run per trial written in one
  go when it ends (the Tune callback ``harness.cluster.sweep_tracking.StudentRuns`` calls it on
  the driver: no per-trial W&B actors), grouped by experiment, tagged per trial (see below);
- teachers: ``log_trajectory(cfg, manifest)``, one run per trajectory (job_type ``teacher``):
  the per-epoch curve from ``manifest['history']`` plus the metrics of every saved checkpoint;
- scores: ``log_scores(cfg, scores, trajectory)``, the score table of one trajectory;
- leaderboard: ``log_leaderboard(cfg, board)``, the leaderboard as a table.
The three ``log_*`` functions are idempotent: a marker under ``wandb_dir/.logged/`` remembers a
fingerprint of what was logged, so re-running a stage does not create duplicate W&B runs
(``force=True`` logs again). Tracking never stops the pipeline: a W&B error is logged and the
function returns None.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.config import ExperimentConfig

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
            if reason not in _WARNED:
                _WARNED.add(reason)
                logger.warning(
                    f"[tracking] tracking.mode=online but {reason}; logging offline instead "
                    f"(upload later with `wandb sync`)"
                )
            return "offline"
    return mode


_WARNED: set[str] = set()
_ONLINE_CHECKS: dict[str, str | None] = {}
ONLINE_PROBE_TIMEOUT_S = 5.0


def online_blocker() -> str | None:
    """Why W&B cannot go online from here (no API key, server unreachable), or None. Checked once
    per process with a bounded wait, so an offline cluster never waits on W&B's own retries."""
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    if base not in _ONLINE_CHECKS:
        _ONLINE_CHECKS[base] = _find_online_blocker(base)
    return _ONLINE_CHECKS[base]


def _find_online_blocker(base: str) -> str | None:
    import netrc
    import socket
    from urllib.parse import urlparse

    url = urlparse(base)
    host, port = url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)
    key = os.environ.get("WANDB_API_KEY")
    if not key:
        try:
            key = (netrc.netrc().authenticators(host) or (None, None, None))[2]
        except (OSError, netrc.NetrcParseError):
            key = None
    if not key:
        return f"no W&B API key is set for {host} (run `wandb login` or set WANDB_API_KEY)"
    try:
        socket.create_connection((host, port), timeout=ONLINE_PROBE_TIMEOUT_S).close()
    except OSError as e:
        return f"the W&B server {host}:{port} cannot be reached ({e.strerror or e})"
    return None


def enabled(cfg: ExperimentConfig) -> bool:
    return tracking_mode(cfg) != "disabled"


def _experiment_root(cfg: ExperimentConfig) -> Path:
    return (Path(str(cfg.storage)) / str(cfg.name)).expanduser().resolve()


def wandb_dir(cfg: ExperimentConfig) -> Path:
    """``<storage>/<name>/wandb`` (absolute, created): where every W&B file of the experiment goes."""
    d = _experiment_root(cfg) / "wandb"
    d.mkdir(parents=True, exist_ok=True)
    return d


def offline_run_dirs(cfg: ExperimentConfig) -> list[Path]:
    """The offline run folders of the experiment (``offline-run-*``), oldest first; what
    ``wandb sync`` uploads. Creates nothing."""
    d = _experiment_root(cfg) / "wandb"
    if not d.is_dir():
        return []
    runs = [p for p in d.rglob("offline-run-*") if p.is_dir() and not p.is_symlink()]
    return sorted(runs, key=lambda p: (p.stat().st_mtime, str(p)))


def sync_command(cfg: ExperimentConfig) -> str | None:
    """The shell line that uploads the experiment's offline runs, or None when there are none."""
    runs = offline_run_dirs(cfg)
    if not runs:
        return None
    return f"wandb sync {_experiment_root(cfg) / 'wandb'}/offline-run-*   # {len(runs)} offline run(s)"


def init_kwargs(cfg: ExperimentConfig, **extra: Any) -> dict:
    """Arguments for ``wandb.init`` shared by every run of the experiment."""
    kw: dict[str, Any] = {
        "project": str(cfg.tracking.project),
        "group": str(cfg.name),
        "dir": str(wandb_dir(cfg).parent),  # W&B writes into <dir>/wandb
        "mode": tracking_mode(cfg),
        "settings": dict(FAST_SETTINGS),
    }
    entity = getattr(cfg.tracking, "entity", None)
    if entity:
        kw["entity"] = str(entity)
    kw.update(extra)
    return kw


def _import_wandb():
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
            run.log({k: v for k, v in metrics.items() if _scalar(v)}, step=int(metrics.get("epoch", step)))

    return _logged_run(cfg, f"student-{name}", None, body, init, force=True, remember=False)


# ---------------------------------------------------------------------------------------------
# runs for teachers, scores, the leaderboard


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _marker(cfg: ExperimentConfig, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    return wandb_dir(cfg) / ".logged" / f"{safe}.json"


def _logged_already(cfg: ExperimentConfig, key: str, fingerprint: str) -> bool:
    try:
        return json.loads(_marker(cfg, key).read_text()).get("fingerprint") == fingerprint
    except (OSError, ValueError):
        return False


def _mark_logged(cfg: ExperimentConfig, key: str, fingerprint: str, run_dir: Path | None) -> None:
    path = _marker(cfg, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "run_dir": str(run_dir) if run_dir else None}))
    os.replace(tmp, path)


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def _run_dir(run) -> Path | None:
    try:
        return Path(run.dir).parent
    except Exception:
        return None


def _logged_run(
    cfg: ExperimentConfig,
    key: str,
    fingerprint_of: Any,
    body: Callable[[Any, Any], None],
    init: dict,
    force: bool,
    remember: bool = True,
) -> Path | None:
    """Open one W&B run, let ``body(wandb, run)`` log into it, finish it, remember it."""
    if not enabled(cfg):
        return None
    fp = _fingerprint(fingerprint_of)
    if not force and _logged_already(cfg, key, fp):
        return None
    run = None
    try:
        wandb = _import_wandb()
        run = wandb.init(**init_kwargs(cfg, reinit="create_new", **init))
        body(wandb, run)
        run.finish()
    except Exception as e:  # tracking must never stop the pipeline
        logger.info("[tracking] W&B logging of %s failed (%s: %s); continuing without it", key, type(e).__name__, e)
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:
                pass
        return None
    run_dir = _run_dir(run)
    if remember:
        _mark_logged(cfg, key, fp, run_dir)
    return run_dir


def log_trajectory(cfg: ExperimentConfig, manifest: dict, force: bool = False) -> Path | None:
    """One W&B run per teacher trajectory: per-epoch curve + checkpoint metrics and table.

    Returns the run folder (None when disabled, already logged, or W&B failed).
    """
    if not enabled(cfg):
        return None
    name = str(manifest.get("name", "trajectory"))
    history = list(manifest.get("history") or [])
    ckpts = list(manifest.get("checkpoints") or [])
    meta_keys = (
        "name",
        "arch",
        "dataset",
        "seed",
        "epochs",
        "checkpoint_every",
        "config_hash",
        "num_params",
        "device",
        "finished",
    )
    config = {k: manifest[k] for k in meta_keys if k in manifest}
    if isinstance(manifest.get("config"), dict):
        config["trajectory_config"] = manifest["config"]
    tags = ["teacher"] + [str(manifest[k]) for k in ("arch", "dataset") if manifest.get(k) is not None]

    def body(wandb, run) -> None:
        run.define_metric("epoch")
        run.define_metric("*", step_metric="epoch")
        by_epoch: dict[int, dict] = {}
        for h in history:
            e = int(h["epoch"])
            by_epoch.setdefault(e, {}).update(
                {k: v for k, v in h.items() if k != "epoch" and isinstance(v, (int, float))}
            )
        ckpt_cols = sorted(
            {
                k
                for c in ckpts
                for k, v in c.items()
                if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        )
        for c in ckpts:
            e = int(c["epoch"])
            by_epoch.setdefault(e, {}).update({f"ckpt/{k}": c[k] for k in ckpt_cols if k in c})
        for e in sorted(by_epoch):
            run.log({"epoch": e, **by_epoch[e]})
        if ckpts:
            cols = ["epoch", *ckpt_cols, "sha256"]
            table = wandb.Table(
                columns=cols,
                data=[[int(c["epoch"]), *[c.get(k) for k in ckpt_cols], str(c.get("sha256", ""))[:12]] for c in ckpts],
            )
            run.log({"checkpoints": table})
            last = ckpts[-1]
            run.summary.update({f"final/{k}": last[k] for k in ckpt_cols if k in last})
        if "wall_time_s" in manifest:
            run.summary["wall_time_s"] = manifest["wall_time_s"]

    fingerprint = {
        "name": name,
        "finished": manifest.get("finished"),
        "epochs": len(history),
        "ckpts": [c.get("sha256") for c in ckpts],
    }
    init = {"job_type": "teacher", "name": name, "tags": tags, "config": config}
    return _logged_run(cfg, f"trajectory-{name}", fingerprint, body, init, force)


def score_rows(scores: Any) -> list[dict]:
    """Flat per-checkpoint rows from a scores file, whatever its nesting: a list of dicts, or the
    first list of dicts found under ``checkpoints``/``rows``/``scores``/any key (nested dicts
    become dotted columns; lists become JSON strings)."""
    from harness.results import flatten_row  # here: results.py imports torch (fileio), tracking must not

    def find(obj: Any) -> list[dict] | None:
        if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
            return obj
        if isinstance(obj, dict):
            for k in ("checkpoints", "rows", "scores", *obj.keys()):
                if k in obj:
                    found = find(obj[k])
                    if found is not None:
                        return found
        return None

    rows = find(scores) or []
    return [flatten_row(r) for r in rows]


def _table(wandb, rows: list[dict]):
    """A ``wandb.Table`` of dict rows (union of keys as columns). W&B types each column, so a
    column that mixes numbers with text is stored as text."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    as_text = set()
    for c in columns:
        kinds = {isinstance(r[c], (int, float)) and not isinstance(r[c], bool) for r in rows if r.get(c) is not None}
        if len(kinds) > 1:
            as_text.add(c)

    def cell(c: str, v: Any) -> Any:
        if v is None:
            return None
        if c in as_text or not _scalar(v):
            return v if isinstance(v, str) else json.dumps(v, default=str)
        return v

    data = [[cell(c, r.get(c)) for c in columns] for r in rows]
    return wandb.Table(columns=columns, data=data, allow_mixed_types=True)


def log_scores(cfg: ExperimentConfig, scores: dict, trajectory: str, force: bool = False) -> Path | None:
    """The score table of one trajectory (one row per checkpoint) as a W&B run with a
    ``wandb.Table``; top-level scalars of ``scores`` (and small dicts such as selections) go
    into the run config."""
    if not enabled(cfg):
        return None
    rows = score_rows(scores)
    config = (
        {
            k: v
            for k, v in scores.items()
            if _scalar(v) or (isinstance(v, dict) and len(json.dumps(v, default=str)) < 4000)
        }
        if isinstance(scores, dict)
        else {}
    )

    def body(wandb, run) -> None:
        if rows:
            run.log({"scores": _table(wandb, rows)})
        run.summary["num_checkpoints"] = len(rows)
        selected = scores.get("selected") if isinstance(scores, dict) else None
        if isinstance(selected, dict):  # the scorer's picks, e.g. {"recon+accuracy": {"epoch": 160, ...}}
            run.summary.update(
                {f"selected/{k}": v["epoch"] for k, v in selected.items() if isinstance(v, dict) and "epoch" in v}
            )

    init = {
        "job_type": "scores",
        "name": f"scores-{trajectory}",
        "tags": ["scores", trajectory[:MAX_TAG_LEN]],
        "config": {"trajectory": trajectory, **config},
    }
    return _logged_run(cfg, f"scores-{trajectory}", scores, body, init, force)


LEADERBOARD_TABLE_KEYS = (
    "dataset",
    "teacher_arch",
    "student_arch",
    "teacher_choice",
    "test_mean",
    "test_std",
    "n",
    "delta_vs_none",
    "teacher_test_acc",
    "temperature",
    "kd_weight",
    "ensemble_reduce",
    "val_mean",
    "val_std",
    "teacher_epochs",
    "reported_epoch",
    "unstable",
)
PAIRED_TABLE_KEYS = (
    "ref",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "wins",
    "ties",
    "losses",
    "p_value",
    "p_holm",
    "verdict",
)


def leaderboard_table_rows(board: list[dict]) -> list[dict]:
    """The leaderboard as flat rows for a W&B Table: accuracies and paired differences in
    percent (points); the reference row has no paired values."""
    pct = {"test_mean", "test_std", "delta_vs_none", "teacher_test_acc", "val_mean", "val_std"}
    out = []
    for b in board:
        row = {
            k: (None if b.get(k) is None else 100 * b[k])
            if k in pct
            else (b.get(k) if _scalar(b.get(k)) else str(b.get(k)))
            for k in LEADERBOARD_TABLE_KEYS
        }
        c = b.get("vs_ref") or {}
        for k in PAIRED_TABLE_KEYS:
            v = c.get(k)
            row[k] = (
                b.get("reference")
                if k == "ref"
                else (None if c.get("self") or v is None else (100 * v if k.startswith("diff") else v))
            )
        out.append(row)
    return out


def claims_table_rows(claims: list[dict]) -> list[dict]:
    pct = ("choice_acc", "ref_acc", "choice_teacher_acc", "ref_teacher_acc", "diff_mean", "diff_ci_low", "diff_ci_high")
    return [
        {k: (None if v is None else 100 * v) if k in pct else v for k, v in c.items() if _scalar(v)} for c in claims
    ]


def selector_table_rows(selectors: dict) -> list[dict]:
    out = []
    for (dataset, teacher, student), g in (selectors or {}).get("groups", {}).items():
        for r in g["rows"]:
            out.append(
                {
                    "dataset": dataset,
                    "teacher_arch": teacher,
                    "student_arch": student,
                    "noise_ceiling": g["noise_ceiling"][0],
                    **{k: v for k, v in r.items() if _scalar(v)},
                    "hit1": r["hit1"][0],
                    "hit3": r["hit3"][0],
                }
            )
    return out


def log_leaderboard(
    cfg: ExperimentConfig,
    board: list[dict],
    force: bool = False,
    claims: list[dict] | None = None,
    selectors: dict | None = None,
    plots: Sequence[Path] = (),
) -> Path | None:
    """The report in a run of its own (job_type ``leaderboard``): the leaderboard, the claims and
    the selector evaluation as ``wandb.Table``s (percent), the plots as ``wandb.Image``s."""
    if not enabled(cfg) or not board:
        return None
    tables = {
        "leaderboard": leaderboard_table_rows(board),
        "claims": claims_table_rows(claims or []),
        "selectors": selector_table_rows(selectors or {}),
    }
    images = [Path(p) for p in plots if Path(p).is_file()]

    def body(wandb, run) -> None:
        from harness.report.leaderboard import policy_note

        run.log({k: _table(wandb, v) for k, v in tables.items() if v})
        if images:
            run.log({f"plots/{p.stem}": wandb.Image(str(p), caption=p.name) for p in images})
        run.summary["selection_policy"] = policy_note(board)

    init = {
        "job_type": "leaderboard",
        "name": f"leaderboard-{cfg.name}",
        "tags": ["leaderboard"],
        "notes": "student test accuracy and paired differences in percent",
    }
    fingerprint = {**tables, "plots": [hashlib.sha256(p.read_bytes()).hexdigest() for p in images]}
    return _logged_run(cfg, "leaderboard", fingerprint, body, init, force)


def report_offline_runs(cfg: ExperimentConfig) -> list[Path]:
    """Log where the offline runs are and how to upload them; return their folders."""
    runs = offline_run_dirs(cfg) if tracking_mode(cfg) == "offline" else []
    if runs:
        logger.info(
            "[tracking] %d W&B offline run(s) in %s; upload with:\n  %s",
            len(runs),
            _experiment_root(cfg) / "wandb",
            sync_command(cfg).split("   #")[0],
        )
    return runs


__all__ = [
    "FAST_SETTINGS",
    "MODES",
    "claims_table_rows",
    "enabled",
    "init_kwargs",
    "leaderboard_table_rows",
    "log_leaderboard",
    "log_scores",
    "log_student_run",
    "selector_table_rows",
    "log_trajectory",
    "offline_run_dirs",
    "report_offline_runs",
    "score_rows",
    "sync_command",
    "tracking_mode",
    "trial_tags",
    "wandb_dir",
]
