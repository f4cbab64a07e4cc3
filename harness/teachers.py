"""Teacher trajectories: train one (arch, seed) run and keep a checkpoint every few epochs.

``train_trajectory`` is pure in the sense the cluster layer needs: a config and names in,
files in the checkpoint store out. It resumes from ``resume.pt`` at the last finished epoch,
and a resumed run ends with the same weights as an uninterrupted one: every epoch's randomness
(shuffling, augmentation, the global torch, numpy and Python RNGs) is derived from (seed,
epoch), never carried over in memory, so ``resume.pt`` holds no RNG state (tested bit for bit
in tests/test_reproducible_artifacts.py: killed mid-epoch, in Ray actors, augmented data).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from harness.config import ExperimentConfig, config_hash, to_dict
from harness.data import DataSplits, derive_seed, make_loader
from harness.experiment import TrajectorySpec, load_splits, open_store, set_threads, trajectory_specs
from harness.fingerprint import differing, environment
from harness.models import count_parameters, create_model
from harness.precision import prepare_model
from harness.progress import Progress
from harness.store import LOCK, StoreError, Trajectory
from harness.training import (
    epoch_seed,
    make_optimizer,
    make_scheduler,
    metrics_from_logits,
    predict_logits,
    resolve_device,
    seed_everything,
    train_epoch,
)

logger = logging.getLogger(__name__)
OnEpoch = Callable[[int, dict], None]


# Execution choices, not part of what a trajectory is: where the files are, how data reach the
# device (device_data draws other augmentation numbers from the same distribution, as precision
# gives other rounding), so a store made before these keys existed keeps its hashes.
_NOT_HASHED = ("root", "num_workers", "eval_batch_size", "download", "device_data")


def trajectory_config(cfg: ExperimentConfig, spec: TrajectorySpec) -> dict:
    """What determines a trajectory's weights; its hash guards against mixing configs."""
    return {
        "arch": spec.arch,
        "seed": spec.seed,
        "data": {k: v for k, v in to_dict(cfg.data).items() if k not in _NOT_HASHED},
        "teacher": {k: v for k, v in to_dict(cfg.teacher).items() if k not in ("archs", "seeds")},
    }


def checkpoint_epochs(epochs: int, every: int) -> list[int]:
    """Epochs that get a checkpoint: every ``every`` epochs plus the final one."""
    return sorted(set(range(every, epochs + 1, every)) | {epochs})


def evaluate_splits(
    model: torch.nn.Module,
    splits,
    batch_size: int,
    device: torch.device,
    names=("train", "val", "test"),
    *,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, float]:
    """Accuracy, loss and mean max-softmax confidence on the named splits (train = un-augmented)."""
    out: dict[str, float] = {}
    for name in names:
        dataset = splits.train_eval if name == "train" else getattr(splits, name)
        loader = make_loader(dataset, batch_size, shuffle=False, device=device)
        logits, y = predict_logits(model, loader, device, precision=precision, channels_last=channels_last)
        out.update(metrics_from_logits(logits, y, name))
    return out


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs between two plain configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        return [d for k in keys for d in config_diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def _refuse_other_config(traj: Trajectory, what: str, stored: dict | None, tconf: dict) -> None:
    diff = config_diff(stored or {}, tconf)
    shown = "; ".join(diff[:6]) + ("; ..." if len(diff) > 6 else "")
    raise StoreError(
        f"trajectory {traj.name} in {traj.dir}: its {what} was made with another config ({shown or 'unknown keys'}); "
        "it is not used. Re-run with --restart to discard it and train this trajectory from scratch, "
        "or use another experiment name"
    )


def _check_existing(cfg: ExperimentConfig, traj: Trajectory, stored: dict | None, tconf: dict, chash: str) -> None:
    """Stored work (``stored``: its manifest) must come from this config; ``restart=true``
    discards it, and an unfinished trajectory's resume state with it."""
    stale = stored is not None and stored.get("config_hash") != chash
    if stale and not cfg.restart:
        _refuse_other_config(traj, "manifest", stored.get("config"), tconf)
    if stale or (cfg.restart and not (stored or {}).get("finished")):
        _discard(traj)


def _discard(traj: Trajectory) -> None:
    """Delete a trajectory's stored state (``--restart``); the folder and its lock stay."""
    removed = [p for p in traj.dir.iterdir() if p.name != LOCK]
    for p in removed:
        p.unlink()
    logger.info(f"[{traj.name}] --restart: discarded {len(removed)} stored file(s); training from scratch")


@dataclass
class TeacherRun:
    """Everything one trajectory's training loop touches, built (or resumed) once."""

    cfg: ExperimentConfig
    spec: TrajectorySpec
    traj: Trajectory
    device: torch.device
    splits: DataSplits
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    manifest: dict
    start: int  # last finished epoch (0: fresh)
    saves: set[int]


def train_trajectory(cfg: ExperimentConfig, arch: str, seed: int, on_epoch: OnEpoch | None = None) -> dict:
    """Train (or finish, or skip) one teacher trajectory; returns its manifest."""
    spec = TrajectorySpec(arch, seed, cfg.data.name)
    traj = open_store(cfg).trajectory(spec.name)
    tconf = trajectory_config(cfg, spec)
    chash = config_hash(tconf)
    stored = traj.manifest() if traj.exists() else None
    if stored and stored.get("finished") and stored.get("config_hash") == chash:
        logger.info(f"[{spec.name}] finished already; skipping")
        return stored
    with traj.lock():  # one writer per trajectory; a second process waits here
        traj.remove_stale_temps()
        stored = traj.manifest() if traj.exists() else None  # (written meanwhile by the one we waited for?)
        _check_existing(cfg, traj, stored, tconf, chash)
        if stored and stored.get("finished") and stored.get("config_hash") == chash:
            logger.info(f"[{spec.name}] finished already; skipping")
            return stored
        return _train(cfg, spec, traj, chash, on_epoch)


def _train(cfg: ExperimentConfig, spec: TrajectorySpec, traj: Trajectory, chash: str, on_epoch: OnEpoch | None) -> dict:
    """The epoch loop of ``train_trajectory`` (under the trajectory's lock)."""
    run = _build_run(cfg, spec, traj, chash)
    epochs = cfg.teacher.epochs
    with Progress(epochs, f"[{spec.name}]", "epoch", log=logger, initial=run.start) as progress:
        for epoch in range(run.start + 1, epochs + 1):
            metrics = _train_one_epoch(run, epoch)
            progress.set_postfix(f"val {metrics['val_acc']:.2%}")
            progress.update()
            if on_epoch is not None:
                on_epoch(epoch, metrics)
    final = run.manifest["checkpoints"][-1]
    logger.info(f"[{spec.name}] done: test acc {final['test_acc']:.2%} in {run.manifest['wall_time_s']:.1f}s")
    return run.manifest


def _build_run(cfg: ExperimentConfig, spec: TrajectorySpec, traj: Trajectory, chash: str) -> TeacherRun:
    """Model, optimizer and schedule of a trajectory, resumed from ``resume.pt`` when there is one."""
    set_threads(cfg, "trajectory")
    device = resolve_device(cfg.device)
    splits = load_splits(cfg, device)
    t = cfg.teacher
    seed_everything(derive_seed("teacher-init", spec.arch, spec.seed))
    model = create_model(spec.arch, num_classes=splits.num_classes, input_shape=splits.input_shape).to(device)
    prepare_model(model, cfg.channels_last)  # before the optimizer: it holds the parameters
    optimizer = make_optimizer(model, t.optim)
    scheduler = make_scheduler(optimizer, t.optim, t.epochs)
    manifest = {
        "name": spec.name,
        "arch": spec.arch,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "epochs": t.epochs,
        "checkpoint_every": t.checkpoint_every,
        "config_hash": chash,
        "config": trajectory_config(cfg, spec),
        "num_params": count_parameters(model),
        "finished": False,
        "checkpoints": [],
        "history": [],
        "wall_time_s": 0.0,
    }
    run = TeacherRun(
        cfg,
        spec,
        traj,
        device,
        splits,
        model,
        optimizer,
        scheduler,
        manifest,
        0,
        set(checkpoint_epochs(t.epochs, t.checkpoint_every)),
    )
    _resume(run)
    run.manifest["device"] = str(device)
    _record_environment(run)
    return run


def _record_environment(run: TeacherRun) -> None:
    """``manifest["environment"]``: the fingerprint this start or resume trains with (threads: as
    ``set_threads`` left them); ``environments``: a ``{"from_epoch", **fingerprint}`` entry per
    start or resume whose fingerprint differs from the last, so a mixed trajectory is visible."""
    env = environment(run.device, torch.get_num_threads(), run.cfg.precision)
    envs = list(run.manifest.get("environments") or [])
    last = {k: v for k, v in envs[-1].items() if k != "from_epoch"} if envs else None
    if last is None or differing(last, env):
        envs.append({"from_epoch": run.start + 1, **env})
    run.manifest["environment"], run.manifest["environments"] = env, envs


def _resume(run: TeacherRun) -> None:
    """Continue from ``resume.pt``, which must record this trajectory's config hash."""
    state = run.traj.load_resume(map_location=run.device)
    if state is None:
        return
    if state.get("config_hash") != run.manifest["config_hash"] or state.get("arch") != run.spec.arch:
        _refuse_other_config(run.traj, "resume state (resume.pt)", state.get("config"), run.manifest["config"])
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.start = state["epoch"]
    run.manifest = run.traj.manifest() if run.traj.exists() else run.manifest
    run.manifest["history"] = state["history"]
    run.manifest["wall_time_s"] = state["wall_time_s"]
    run.manifest["environments"] = state.get("environments", run.manifest.get("environments", []))
    logger.info(f"[{run.spec.name}] resuming after epoch {run.start}/{run.cfg.teacher.epochs}")


def _train_one_epoch(run: TeacherRun, epoch: int) -> dict:
    """Train, evaluate, log and save one epoch (a checkpoint on save epochs, ``resume.pt`` always)."""
    cfg, name, began = run.cfg, run.spec.name, time.perf_counter()
    # torch, numpy and Python RNGs from (seed, epoch): a resume replays exactly what this epoch
    # draws, even from a generator the loader does not fork per item (numpy). Same torch seed as
    # before, so stored trajectories keep their bits.
    seed_everything(epoch_seed(run.spec.seed, epoch))
    batches = make_loader(
        run.splits.train,
        cfg.data.batch_size,
        shuffle=True,
        seed=run.spec.seed,
        epoch=epoch,
        device=run.device,
        num_workers=cfg.data.num_workers,
    )
    lr = run.optimizer.param_groups[0]["lr"]
    res = train_epoch(
        run.model,
        batches,
        run.optimizer,
        lambda logits, x, y: torch.nn.functional.cross_entropy(logits, y),
        run.device,
        progress=f"[{name}] epoch {epoch}",
        precision=cfg.precision,
        channels_last=cfg.channels_last,
    )
    run.scheduler.step()
    names = ("train", "val", "test") if epoch in run.saves else ("val",)
    metrics = evaluate_splits(
        run.model,
        run.splits,
        cfg.data.eval_batch_size,
        run.device,
        names,
        precision=cfg.precision,
        channels_last=cfg.channels_last,
    )
    seconds = time.perf_counter() - began
    run.manifest["wall_time_s"] += seconds
    run.manifest["history"].append(
        {
            "epoch": epoch,
            "lr": lr,
            "train_loss_running": res.loss,
            "train_acc_running": res.acc,
            "val_acc": metrics["val_acc"],
            "seconds": seconds,
        }
    )
    logger.info(
        f"[{name}] epoch {epoch:3d}/{cfg.teacher.epochs} loss {res.loss:.4f} acc {res.acc:6.2%} "
        f"val {metrics['val_acc']:6.2%} lr {lr:.4f} {seconds:5.2f}s"
    )
    _save_epoch(run, epoch, metrics)
    return metrics


def _save_epoch(run: TeacherRun, epoch: int, metrics: dict) -> None:
    manifest = run.manifest
    if epoch in run.saves:
        weights = {
            k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()
        }  # same files with channels_last
        payload = {
            "model": weights,
            "arch": run.spec.arch,
            "num_classes": run.splits.num_classes,
            "input_shape": list(run.splits.input_shape),
            "epoch": epoch,
        }
        run.traj.save_checkpoint(epoch, payload, manifest, {**metrics, "wall_time_s": manifest["wall_time_s"]})
        manifest["finished"] = epoch == run.cfg.teacher.epochs
        run.traj.write_manifest(manifest)
    run.traj.save_resume(
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "epoch": epoch,
            "history": manifest["history"],
            "wall_time_s": manifest["wall_time_s"],
            "environments": manifest["environments"],  # (the manifest is written on save epochs only)
            "config_hash": manifest["config_hash"],
            "config": manifest["config"],
            "arch": run.spec.arch,
        }
    )


def run_teachers(cfg: ExperimentConfig) -> list[dict]:
    """Train every trajectory of the config in this process, one after another."""
    specs = trajectory_specs(cfg)
    logger.info(f"[teachers] {len(specs)} trajectories into {open_store(cfg).trajectories_dir}")
    return [train_trajectory(cfg, s.arch, s.seed) for s in specs]
