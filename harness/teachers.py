"""Teacher trajectories: train one (arch, seed) run and keep a checkpoint every few epochs.

``train_trajectory`` is pure in the sense the cluster layer needs: a config and names in,
files in the checkpoint store out. It resumes from ``resume.pt`` at the last finished epoch,
and a resumed run ends with the same weights as an uninterrupted one: every epoch's randomness
(shuffling, augmentation) is derived from (seed, epoch), never carried over in memory.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from harness.config import config_hash, to_dict
from harness.data import derive_seed, make_loader
from harness.experiment import TrajectorySpec, load_splits, open_store, set_threads, trajectory_specs
from harness.models import count_parameters, create_model
from harness.store import StoreError, Trajectory
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

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


def trajectory_config(cfg, spec: TrajectorySpec) -> dict:
    """What determines a trajectory's weights; its hash guards against mixing configs."""
    return {
        "arch": spec.arch,
        "seed": spec.seed,
        "data": {k: v for k, v in to_dict(cfg.data).items() if k not in ("root", "num_workers", "eval_batch_size", "download")},
        "teacher": {k: v for k, v in to_dict(cfg.teacher).items() if k not in ("archs", "seeds")},
    }


def checkpoint_epochs(epochs: int, every: int) -> list[int]:
    """Epochs that get a checkpoint: every ``every`` epochs plus the final one."""
    return sorted(set(range(every, epochs + 1, every)) | {epochs})


def evaluate_splits(model: torch.nn.Module, splits, batch_size: int, device: torch.device, names=("train", "val", "test")) -> dict[str, float]:
    """Accuracy, loss and mean max-softmax confidence on the named splits (train = un-augmented)."""
    out: dict[str, float] = {}
    for name in names:
        dataset = splits.train_eval if name == "train" else getattr(splits, name)
        logits, y = predict_logits(model, make_loader(dataset, batch_size, shuffle=False, device=device), device)
        out.update(metrics_from_logits(logits, y, name))
    return out


def _check_existing(traj: Trajectory, chash: str) -> None:
    if traj.exists() and traj.manifest().get("config_hash") != chash:
        raise StoreError(
            f"trajectory {traj.name} in {traj.dir} was trained with a different config "
            f"(hash {traj.manifest().get('config_hash')} != {chash}); use another experiment name "
            "or delete that folder"
        )


def train_trajectory(cfg, arch: str, seed: int, log: Log = _print, on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """Train (or finish, or skip) one teacher trajectory; returns its manifest."""
    spec = TrajectorySpec(arch, seed, cfg.data.name)
    store = open_store(cfg)
    traj = store.trajectory(spec.name)
    tconf = trajectory_config(cfg, spec)
    chash = config_hash(tconf)
    _check_existing(traj, chash)
    if traj.is_finished():
        log(f"[{spec.name}] finished already; skipping")
        return traj.manifest()

    set_threads(cfg)
    device = resolve_device(cfg.device)
    splits = load_splits(cfg, device)
    t = cfg.teacher
    seed_everything(derive_seed("teacher-init", arch, seed))
    model = create_model(arch, num_classes=splits.num_classes, input_shape=splits.input_shape).to(device)
    optimizer = make_optimizer(model, t.optim)
    scheduler = make_scheduler(optimizer, t.optim, t.epochs)
    manifest = {
        "name": spec.name, "arch": arch, "dataset": spec.dataset, "seed": seed,
        "epochs": t.epochs, "checkpoint_every": t.checkpoint_every, "config_hash": chash,
        "config": tconf, "num_params": count_parameters(model), "finished": False,
        "checkpoints": [], "history": [], "wall_time_s": 0.0,
    }
    start = 0
    state = traj.load_resume(map_location=device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["epoch"]
        manifest = traj.manifest() if traj.exists() else manifest
        manifest["history"] = state["history"]
        manifest["wall_time_s"] = state["wall_time_s"]
        log(f"[{spec.name}] resuming after epoch {start}/{t.epochs}")
    manifest["device"] = str(device)
    saves = set(checkpoint_epochs(t.epochs, t.checkpoint_every))

    for epoch in range(start + 1, t.epochs + 1):
        began = time.perf_counter()
        torch.manual_seed(epoch_seed(seed, epoch))
        batches = make_loader(splits.train, cfg.data.batch_size, shuffle=True, seed=seed, epoch=epoch, device=device, num_workers=cfg.data.num_workers)
        lr = optimizer.param_groups[0]["lr"]
        res = train_epoch(model, batches, optimizer, lambda logits, x, y: torch.nn.functional.cross_entropy(logits, y), device)
        scheduler.step()
        names = ("train", "val", "test") if epoch in saves else ("val",)
        metrics = evaluate_splits(model, splits, cfg.data.eval_batch_size, device, names)
        seconds = time.perf_counter() - began
        manifest["wall_time_s"] += seconds
        manifest["history"].append({"epoch": epoch, "lr": lr, "train_loss_running": res.loss, "train_acc_running": res.acc, "val_acc": metrics["val_acc"], "seconds": seconds})
        log(f"[{spec.name}] epoch {epoch:3d}/{t.epochs} loss {res.loss:.4f} acc {res.acc:6.2%} "
            f"val {metrics['val_acc']:6.2%} lr {lr:.4f} {seconds:5.2f}s")
        if epoch in saves:
            payload = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                       "arch": arch, "num_classes": splits.num_classes, "input_shape": list(splits.input_shape), "epoch": epoch}
            traj.save_checkpoint(epoch, payload, manifest, {**metrics, "wall_time_s": manifest["wall_time_s"]})
            manifest["finished"] = epoch == t.epochs
            traj.write_manifest(manifest)
        traj.save_resume({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                          "epoch": epoch, "history": manifest["history"], "wall_time_s": manifest["wall_time_s"]})
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    final = manifest["checkpoints"][-1]
    log(f"[{spec.name}] done: test acc {final['test_acc']:.2%} in {manifest['wall_time_s']:.1f}s")
    return manifest


def run_teachers(cfg, log: Log = _print) -> list[dict]:
    """Train every trajectory of the config in this process, one after another."""
    specs = trajectory_specs(cfg)
    log(f"[teachers] {len(specs)} trajectories into {open_store(cfg).trajectories_dir}")
    return [train_trajectory(cfg, s.arch, s.seed, log=log) for s in specs]
