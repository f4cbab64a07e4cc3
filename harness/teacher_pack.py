"""The one trainer of teacher trajectories: a pack of seeds of one arch and recipe as one vectorized model.

``harness/teachers.py`` forms the packs, takes the members' locks and skips finished members;
``train_members`` trains the rest as a ``PackedModel`` (``harness/packing.py``: BatchNorm
statistics per member), a lone trajectory as a pack of one on the same code path. Each member
is stored as its own trajectory: its checkpoints (a plain ``state_dict`` of the architecture), its
manifest and its own ``resume.pt`` holding its slices of the pack (weights, buffers, SGD momentum
of the padded parameters, LR schedule, epoch, history). A pack resumes from its members' resume
states; members at different epochs train in sub-packs by start epoch, one after another.

**Bits.** On a CPU a member's checkpoints are bit-identical however it was packed: the packed
layers give every member the bits it computes alone (convolutions member by member), the fused
SGD updates padded per-member slices alike, a member's init and data order derive from its own
seed and epoch, and nothing in an epoch draws from the global RNGs (seeded per epoch from the
pack's first seed all the same; tests/test_teacher_packs.py). On a GPU a pack of more than one
runs grouped convolutions, not checked bit for bit: packs are therefore a fixed function of the
config (``teachers.teacher_packs``), each manifest records its pack, and resuming a member in
another pack on a GPU is refused. ``wall_time_s``: a member is charged the pack's epoch seconds
divided by its size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import ExperimentConfig, config_hash
from harness.data import DataSplits, derive_seed, make_loader
from harness.experiment import TrajectorySpec, load_splits, open_store, set_threads
from harness.fingerprint import differing, environment
from harness.models import count_parameters, create_model
from harness.packing import PackedModel, predict_packed, train_packed_epoch
from harness.precision import to_memory_format
from harness.progress import Progress
from harness.store import StoreError, Trajectory
from harness.training import (
    epoch_seed,
    make_optimizer,
    make_scheduler,
    metrics_from_logits,
    resolve_device,
    seed_everything,
)
from harness.trajectory_identity import PackOnEpoch, checkpoint_epochs, refuse_other_config, trajectory_config

logger = logging.getLogger(__name__)


@dataclass
class Member:
    """One trajectory of a pack: where it is stored, its manifest and the epoch it starts after."""

    spec: TrajectorySpec
    traj: Trajectory
    manifest: dict
    start: int = 0
    state: dict | None = None  # its resume.pt


@dataclass
class TeacherPack:
    """A (sub-)pack's training state: members of one start epoch and their packed model."""

    cfg: ExperimentConfig
    device: torch.device
    splits: DataSplits
    members: list[Member]
    model: PackedModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    keys: list[str]  # a member state_dict's keys in the architecture's own order


def train_members(
    cfg: ExperimentConfig, arch: str, specs: Sequence[TrajectorySpec], pack: dict, on_epoch: PackOnEpoch | None
) -> dict[str, dict]:
    """Train the unfinished members ``specs`` of ``pack`` (``{size, seeds}``: the config's pack)
    under their locks; returns name -> manifest. Members resume from their ``resume.pt``."""
    set_threads(cfg, "trajectory")
    device = resolve_device(cfg.device)
    splits = load_splits(cfg, device)
    store = open_store(cfg)
    members = [_member(cfg, spec, store.trajectory(spec.name), pack, device) for spec in specs]
    for start in sorted({m.start for m in members}):  # sub-packs by start epoch: each keeps its bits
        group = _build(cfg, arch, [m for m in members if m.start == start], splits, device)
        _train(group, start, on_epoch)
    for m in members:
        final = m.manifest["checkpoints"][-1]
        logger.info(f"[{m.spec.name}] done: test acc {final['test_acc']:.2%} in {m.manifest['wall_time_s']:.1f}s")
    return {m.spec.name: m.manifest for m in members}


def _member(cfg: ExperimentConfig, spec: TrajectorySpec, traj: Trajectory, pack: dict, device: torch.device) -> Member:
    """A member's fresh manifest, or its stored one and resume state (checked against the config)."""
    tconf = trajectory_config(cfg, spec)
    place = {**pack, "index": pack["seeds"].index(spec.seed)}
    manifest = {
        "name": spec.name,
        "arch": spec.arch,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "epochs": cfg.teacher.epochs,
        "checkpoint_every": cfg.teacher.checkpoint_every,
        "config_hash": config_hash(tconf),
        "config": tconf,
        "pack": place,
        "finished": False,
        "checkpoints": [],
        "history": [],
        "wall_time_s": 0.0,
    }
    member = Member(spec, traj, manifest)
    state = traj.load_resume(map_location=device)
    if state is not None:
        if state.get("config_hash") != manifest["config_hash"] or state.get("arch") != spec.arch:
            refuse_other_config(traj, "resume state (resume.pt)", state.get("config"), tconf)
        before = state.get("pack") or {}
        if device.type == "cuda" and (before.get("size"), before.get("seeds")) != (pack["size"], pack["seeds"]):
            raise StoreError(
                f"trajectory {spec.name}: trained in the pack {before.get('seeds')} of {before.get('size')} and now "
                f"in {pack['seeds']}; on a GPU a pack's grouped convolutions round by pack, so it is not resumed in "
                "another: set teacher.pack_size back, or re-run with --restart"
            )
        stored = traj.manifest() if traj.exists() else None
        member.manifest = {**(stored or manifest), "pack": place}
        member.manifest["history"] = state["history"]
        member.manifest["wall_time_s"] = state["wall_time_s"]
        member.manifest["environments"] = state.get("environments", member.manifest.get("environments", []))
        member.start, member.state = state["epoch"], state
        logger.info(f"[{spec.name}] resuming after epoch {member.start}/{cfg.teacher.epochs}")
    member.manifest["device"] = str(device)
    env = environment(device, torch.get_num_threads(), cfg.precision)
    envs = list(member.manifest.get("environments") or [])
    last = {k: v for k, v in envs[-1].items() if k != "from_epoch"} if envs else None
    if last is None or differing(last, env):  # a start or resume under another fingerprint is visible
        envs.append({"from_epoch": member.start + 1, **env})
    member.manifest["environment"], member.manifest["environments"] = env, envs
    return member


def _build(
    cfg: ExperimentConfig, arch: str, members: list[Member], splits: DataSplits, device: torch.device
) -> TeacherPack:
    """The packed model, fused SGD and LR schedule of ``members`` (each initialized from its own
    seed, as alone), continued from their resume states when they have them."""
    models = []
    for m in members:
        seed_everything(derive_seed("teacher-init", arch, m.spec.seed))
        models.append(create_model(arch, num_classes=splits.num_classes, input_shape=splits.input_shape).to(device))
        m.manifest["num_params"] = count_parameters(models[-1])
    model = PackedModel(models)
    optimizer = make_optimizer(model, cfg.teacher.optim, fused=True)
    scheduler = make_scheduler(optimizer, cfg.teacher.optim, cfg.teacher.epochs)
    pack = TeacherPack(cfg, device, splits, members, model, optimizer, scheduler, list(models[0].state_dict()))
    if members[0].state is not None:
        _load(pack, [m.state for m in members])
    return pack


def _stack(values: list[Any]) -> Any:
    return torch.stack(values) if all(isinstance(v, Tensor) for v in values) else values[0]


def _member_format(pack: TeacherPack, state: dict) -> dict:
    """A ``resume.pt`` of the plain-module trainer (before packs; the same bits) as a member
    state: its SGD momentum flattened and padded like the pack's parameters."""
    if state.get("format") == "teacher-pack-member":
        return state
    params = pack.model.parameters()
    slots = {}
    for j, st in state["optimizer"]["state"].items():
        size, buf = params[j][0].numel(), st.get("momentum_buffer")
        if isinstance(buf, Tensor):
            buf = F.pad(buf.reshape(-1), (0, size - buf.numel())).view(params[j].shape[1:])
        slots[j] = {**st, "momentum_buffer": buf}
    groups = [{**g, "fused": True, "foreach": None} for g in state["optimizer"]["param_groups"]]  # as built
    return {**state, "optimizer": {"state": slots, "param_groups": groups}}


def _load(pack: TeacherPack, states: list[dict]) -> None:
    """Continue ``pack`` from its members' resume states (their slices stacked)."""
    states = [_member_format(pack, s) for s in states]
    weights = {k: torch.stack([s["model"][k] for s in states]) for k in states[0]["model"]}
    pack.model.load_state_dict(
        {"params": {k: weights[k] for k in pack.model.params}, "buffers": {k: weights[k] for k in pack.model.buffers}}
    )
    opt = states[0]["optimizer"]
    slots = {
        i: {k: _stack([s["optimizer"]["state"][i][k] for s in states]) for k in st} for i, st in opt["state"].items()
    }
    pack.optimizer.load_state_dict({"state": slots, "param_groups": opt["param_groups"]})
    pack.scheduler.load_state_dict(states[0]["scheduler"])


def _member_state(pack: TeacherPack, i: int) -> dict[str, Tensor]:
    """Member ``i``'s weights and buffers as the architecture's ``state_dict`` (its key order)."""
    own = pack.model.member_state_dict(i)
    return {k: own[k].contiguous() for k in pack.keys}


def _epoch_batches(pack: TeacherPack, epoch: int) -> Iterator[tuple[Tensor, Tensor, None]]:
    """Each member's batches of ``epoch`` (its own ``(seed, epoch)`` order and augmentation),
    zipped into x [N, B, ...], y [N, B]."""
    cfg = pack.cfg
    loaders = [
        make_loader(
            pack.splits.train,
            cfg.data.batch_size,
            shuffle=True,
            seed=m.spec.seed,
            epoch=epoch,
            device=pack.device,
            num_workers=cfg.data.num_workers,
        )
        for m in pack.members
    ]
    for group in zip(*loaders, strict=True):
        if len(group) == 1:  # a pack of one: the plain module's batch (channels_last as configured)
            x, y = group[0]
            yield to_memory_format(x, cfg.channels_last).unsqueeze(0), y.unsqueeze(0), None
        else:
            yield torch.stack([x for x, _ in group]), torch.stack([y for _, y in group]), None


def _loss(logits: Tensor, labels: Tensor, soft: None) -> Tensor:
    """Each member's mean cross entropy [N] (the very call a member makes alone)."""
    return torch.stack([F.cross_entropy(z, y) for z, y in zip(logits, labels, strict=True)])


def _evaluate(pack: TeacherPack, names: Sequence[str]) -> list[dict[str, float]]:
    """Per member: accuracy, loss and confidence on ``names`` (train = un-augmented), as
    ``metrics_from_logits`` computes them for one model."""
    out: list[dict[str, float]] = [{} for _ in pack.members]
    cl = pack.cfg.channels_last and len(pack.members) == 1
    for name in names:
        dataset = pack.splits.train_eval if name == "train" else getattr(pack.splits, name)
        loader = make_loader(dataset, pack.cfg.data.eval_batch_size, shuffle=False, device=pack.device)
        batches = ((to_memory_format(x, cl), y) for x, y in loader)
        logits, y = predict_packed(pack.model, batches, pack.device, precision=pack.cfg.precision)
        for i, metrics in enumerate(out):
            metrics.update(metrics_from_logits(logits[i], y, name))
    return out


def _train(pack: TeacherPack, start: int, on_epoch: PackOnEpoch | None) -> None:
    """Epochs ``start + 1 .. teacher.epochs`` of a (sub-)pack; every member saved each epoch."""
    cfg, members = pack.cfg, pack.members
    saves = set(checkpoint_epochs(cfg.teacher.epochs, cfg.teacher.checkpoint_every))
    seeds = [m.spec.seed for m in members]
    label = members[0].spec.name if len(members) == 1 else f"{members[0].spec.arch} pack {seeds}"
    with Progress(cfg.teacher.epochs, f"[{label}]", "epoch", log=logger, initial=start) as progress:
        for epoch in range(start + 1, cfg.teacher.epochs + 1):
            began = time.perf_counter()
            # the global RNGs from (seed, epoch) as a lone trajectory always did: nothing in an
            # epoch draws from them (loaders use private generators), so the pack's first seed serves all
            seed_everything(epoch_seed(members[0].spec.seed, epoch))
            lr = pack.optimizer.param_groups[0]["lr"]
            res = train_packed_epoch(
                pack.model,
                _epoch_batches(pack, epoch),
                pack.optimizer,
                _loss,
                progress=f"[{label}] epoch {epoch}",
                precision=cfg.precision,
            )
            pack.scheduler.step()
            metrics = _evaluate(pack, ("train", "val", "test") if epoch in saves else ("val",))
            seconds = (time.perf_counter() - began) / len(members)
            opt = pack.optimizer.state_dict()  # once per epoch; each member keeps its slices
            for i, m in enumerate(members):
                _record(pack, m, epoch, lr, (float(res.loss[i]), float(res.acc[i])), metrics[i], seconds)
                _save_epoch(pack, i, epoch, metrics[i], epoch in saves, opt)
            progress.set_postfix(" ".join(f"val {mt['val_acc']:.2%}" for mt in metrics))
            progress.update()
            if on_epoch is not None:  # after every member is saved: a hook that stops loses nothing
                for m, mt in zip(members, metrics, strict=True):
                    on_epoch(m.spec.name, epoch, mt)


def _record(
    pack: TeacherPack, m: Member, epoch: int, lr: float, run: tuple[float, float], metrics: dict, seconds: float
) -> None:
    """Append the epoch to a member's history (``seconds``: its share of the pack's epoch) and log it."""
    m.manifest["wall_time_s"] += seconds
    m.manifest["history"].append(
        {
            "epoch": epoch,
            "lr": lr,
            "train_loss_running": run[0],
            "train_acc_running": run[1],
            "val_acc": metrics["val_acc"],
            "seconds": seconds,
        }
    )
    logger.info(
        f"[{m.spec.name}] epoch {epoch:3d}/{pack.cfg.teacher.epochs} loss {run[0]:.4f} acc {run[1]:6.2%} "
        f"val {metrics['val_acc']:6.2%} lr {lr:.4f} {seconds:5.2f}s"
    )


def _save_epoch(pack: TeacherPack, i: int, epoch: int, metrics: dict, checkpoint: bool, opt: dict) -> None:
    """Member ``i``'s checkpoint and manifest (on save epochs) and its ``resume.pt`` (always;
    ``opt``: the pack optimizer's ``state_dict``, whose slices are the member's momentum)."""
    m = pack.members[i]
    manifest, weights = m.manifest, _member_state(pack, i)
    if checkpoint:
        payload = {
            "model": {k: v.detach().cpu() for k, v in weights.items()},
            "arch": m.spec.arch,
            "num_classes": pack.splits.num_classes,
            "input_shape": list(pack.splits.input_shape),
            "epoch": epoch,
        }
        m.traj.save_checkpoint(epoch, payload, manifest, {**metrics, "wall_time_s": manifest["wall_time_s"]})
        manifest["finished"] = epoch == pack.cfg.teacher.epochs
        m.traj.write_manifest(manifest)
    slots = {
        j: {k: v[i].clone() if isinstance(v, Tensor) else v for k, v in st.items()} for j, st in opt["state"].items()
    }
    m.traj.save_resume(
        {
            "model": weights,
            "optimizer": {"state": slots, "param_groups": opt["param_groups"]},  # its momentum slices
            "scheduler": pack.scheduler.state_dict(),
            "epoch": epoch,
            "history": manifest["history"],
            "wall_time_s": manifest["wall_time_s"],
            "environments": manifest["environments"],  # (the manifest is written on save epochs only)
            "config_hash": manifest["config_hash"],
            "config": manifest["config"],
            "arch": m.spec.arch,
            "pack": manifest["pack"],
            "format": "teacher-pack-member",
        }
    )
