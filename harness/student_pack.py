"""The one trainer of student packs, used by ``distill`` (sweep runs) and the proxy selector.

A pack is students of one architecture and recipe trained as one vectorized model
(``harness/packing.py``), each learning from its own teacher, temperature and KD weight
(``harness/student_batches.py``). ``build_pack`` makes fresh students (each initialized from its
own seed, as when trained alone) or restores a saved ``pack_state``; ``train_epoch`` trains one
epoch; ``evaluate`` gives every member's logits on a split; ``shrink`` keeps some members with
their weights, momentum and place in the schedule. What a caller records (histories, rows, rungs)
is its own.

**One run, one result.** A member's weights and metrics are bit for bit the same whatever pack
it is in (its size, its partners, its place): the packed layers give every member its own bits
and store each member's parameters padded so that the fused SGD updates all of them alike
(``harness/packed_layers.py``), a member's data order and init depend on its own seed, and nothing
in training draws from a shared random stream. On a CPU a pack computes with one torch thread
(``packing.PACK_THREADS``): a multi-threaded matrix product splits its sums by the shape it is given, so
a pack of one would otherwise round differently from a pack of many; packs scale by running side
by side (one trial per CPU), not by threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from harness.config import ExperimentConfig
from harness.data import DataSplits, derive_seed, make_loader
from harness.models import create_model
from harness.packing import PackedModel, PackEpoch, pack_threads, predict_packed, train_packed_epoch
from harness.student_batches import Learner, PackBatches
from harness.teacher_logits import LogitCache
from harness.training import make_optimizer, make_scheduler, seed_everything


def new_students(
    arch: str, seeds: Sequence[int], splits: DataSplits, optim_cfg: Any, epochs: int, device: torch.device
) -> tuple[PackedModel, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """A pack of fresh ``arch`` students, one per seed, with its (fused) SGD and LR schedule over
    ``epochs``. Each member's init depends on its own seed only, as when it is trained alone."""
    models = []
    for seed in seeds:
        seed_everything(derive_seed("student-init", arch, seed))
        models.append(create_model(arch, num_classes=splits.num_classes, input_shape=splits.input_shape).to(device))
    model = PackedModel(models)
    optimizer = make_optimizer(model, optim_cfg, fused=True)
    return model, optimizer, make_scheduler(optimizer, optim_cfg, epochs)


@dataclass
class StudentPack:
    """A pack's training state: its members, model, optimizer, LR schedule and batches."""

    cfg: ExperimentConfig
    arch: str
    epochs: int  # the LR schedule's length
    splits: DataSplits
    cache: LogitCache
    device: torch.device
    members: list[Learner]
    model: PackedModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    batches: PackBatches


def build_pack(
    cfg: ExperimentConfig,
    arch: str,
    members: Sequence[Learner],
    splits: DataSplits,
    cache: LogitCache,
    device: torch.device,
    epochs: int,
    state: dict | None = None,
) -> StudentPack:
    """A pack of ``members`` (students of ``arch``, recipe ``cfg.student``, schedule over
    ``epochs``): fresh, or with ``state`` (``pack_state``) their weights, momentum and schedule."""
    seeds = [m.seed for m in members]
    model, optimizer, scheduler = new_students(arch, seeds, splits, cfg.student.optim, epochs, device)
    if state is not None:
        _load(model, optimizer, scheduler, state)
    batches = PackBatches(cfg, splits, members, cache, device)
    return StudentPack(cfg, arch, epochs, splits, cache, device, list(members), model, optimizer, scheduler, batches)


def pack_state(pack: StudentPack) -> dict[str, Any]:
    """What a pack continues from: stacked weights, optimizer and schedule state."""
    return {
        "pack": pack.model.state_dict(),
        "optimizer": pack.optimizer.state_dict(),
        "scheduler": pack.scheduler.state_dict(),
    }


def load_pack_state(pack: StudentPack, state: dict[str, Any]) -> None:
    """Continue ``pack`` from a ``pack_state`` of a pack of the same members."""
    _load(pack.model, pack.optimizer, pack.scheduler, state)


def _load(model: PackedModel, optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any]) -> None:
    model.load_state_dict(state["pack"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])


def train_epoch(pack: StudentPack, epoch: int, label: str) -> PackEpoch:
    """Train epoch ``epoch`` (1-based) and step the LR schedule; per-member loss and accuracy."""
    with pack_threads(pack.device):
        res = train_packed_epoch(
            pack.model,
            pack.batches.epoch(epoch),
            pack.optimizer,
            pack.batches.loss,
            progress=f"{label} epoch {epoch}",
            precision=pack.cfg.precision,
        )
    pack.scheduler.step()
    return res


def evaluate(pack: StudentPack, split: str) -> tuple[Tensor, Tensor]:
    """Every member's logits on ``split`` (val, test) [N, n, C] and its labels [n] (CPU)."""
    loader = make_loader(getattr(pack.splits, split), pack.cfg.data.eval_batch_size, shuffle=False, device=pack.device)
    with pack_threads(pack.device):
        return predict_packed(pack.model, loader, pack.device, precision=pack.cfg.precision)


def shrink(pack: StudentPack, keep: Sequence[int]) -> StudentPack:
    """The pack's members ``keep`` only (rows of every stacked tensor: weights, buffers, momentum)."""
    index = torch.tensor(list(keep), dtype=torch.long)

    def take(v: Any) -> Any:
        return v[index.to(v.device)] if isinstance(v, Tensor) and v.dim() > 0 else v

    state = pack_state(pack)
    state["pack"] = {part: {k: take(v) for k, v in tensors.items()} for part, tensors in state["pack"].items()}
    opt = state["optimizer"]
    state["optimizer"] = {**opt, "state": {i: {k: take(v) for k, v in st.items()} for i, st in opt["state"].items()}}
    members = [pack.members[i] for i in keep]
    return build_pack(pack.cfg, pack.arch, members, pack.splits, pack.cache, pack.device, pack.epochs, state)
