"""Packed models: N networks of one architecture trained as one vectorized model.

A checkpoint-KD study multiplies small students (checkpoint x ensemble x T x kd_weight x seed),
and one small student leaves a CPU core or a GPU mostly idle: its matrix products are too small
to reach the hardware's rate. ``PackedModel`` runs N members as one folded network
(``harness/packed_layers.py``): every layer is one batched kernel over the N members. The
members share no parameter, their (fused) SGD is elementwise and the loss is
the sum of the members' losses, so each member follows the path it would follow alone, bit for
bit: on one machine a member's result does not depend on its pack (size, partners, place).
BatchNorm works: its running statistics are stacked buffers updated in place per member.

``train_packed_epoch`` and ``predict_packed`` are the epoch loop and the evaluation of a pack;
``pack_threads`` the torch threads they run with. Building, training and shrinking packs of
students is ``harness/student_pack.py``'s, and what a member learns from (its batches, labels,
soft targets) ``harness/student_batches.py``'s. A pack of one member is the same code path.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.packed_layers import PackedLayer, fold
from harness.precision import autocast
from harness.progress import track
from harness.training import num_threads

PACK_SIZE_CAP = 64  # members per pack at most (auto)
PARAMS_PER_PACK = {"cpu": 4_000_000, "cuda": 200_000_000}  # auto: members x parameters per pack at most
PACK_THREADS = 1  # torch threads of packs and teacher logits on a CPU (``pack_threads``)


class PackedModel:
    """N models of one architecture as one folded network (``harness/packed_layers.py``);
    ``__call__`` runs all of them at once. Each member computes the bits it would compute alone
    or in any other pack, and a pack of one is the same code path (no second one)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ValueError("a pack needs at least one model")
        self.size = len(models)
        self.net = fold(models)
        self.params = {  # [N, ...] each, named as in a member (views of the padded storage)
            f"{prefix}.{name}" if prefix else name: view
            for prefix, layer in self.net.named_modules()
            if isinstance(layer, PackedLayer)
            for name, view in layer.stacked_parameters().items()
        }
        self.buffers = dict(self.net.named_buffers())

    def __call__(self, x: Tensor, shared: bool = False) -> Tensor:
        """Logits [N, B, C]; ``x`` is [N, B, ...] (one batch per member) or, ``shared``, [B, ...]."""
        if self.size == 1:  # the same kernels; fewer views
            return self.net(x if shared else x[0]).unsqueeze(0)
        if shared:
            folded = x.repeat(1, self.size, *([1] * (x.dim() - 2)))
        else:
            folded = x.transpose(0, 1).reshape(x.shape[1], self.size * x.shape[2], *x.shape[3:])
        out = self.net(folded)  # [B, N*C] or (a linear head's) [B, N, C]
        return (
            out.view(out.shape[0], self.size, -1).transpose(0, 1).contiguous()
            if out.dim() == 2
            else out.transpose(0, 1).contiguous()
        )

    def parameters(self) -> list[Tensor]:
        """The leaf tensors an optimizer updates: per member parameter one padded ``[N, P]``
        (``packed_layers.PackedLayer``; the fused SGD then rounds every member alike)."""
        return list(self.net.parameters())

    def train(self, mode: bool = True) -> PackedModel:
        self.net.train(mode)
        return self

    def eval(self) -> PackedModel:
        return self.train(False)

    def state_dict(self) -> dict:
        return {
            "params": {k: v.detach() for k, v in self.params.items()},
            "buffers": {k: v.detach() for k, v in self.buffers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for have, saved in ((self.params, state["params"]), (self.buffers, state["buffers"])):
                if set(have) != set(saved) or any(have[k].shape != saved[k].shape for k in have):
                    raise ValueError("the saved pack has other tensors or shapes than this pack")
                for k, v in saved.items():
                    have[k].copy_(v)

    def member_state_dict(self, i: int) -> dict[str, Tensor]:
        """Member ``i`` as an ordinary ``state_dict`` (loads into the architecture's module)."""
        return {k: v[i].detach().clone() for k, v in {**self.params, **self.buffers}.items()}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def auto_pack_size(params_per_member: int, device: torch.device, runs: int, slots: int) -> int:
    """``sweep.pack_size=auto``: as many members as the device holds comfortably (a parameter
    budget per pack: small MLPs pack by the dozen, a WRN on a CPU hardly), balanced over the
    trial slots: the number of packs is rounded up to whole waves of ``slots`` and the runs
    spread evenly over them, so no last pack runs alone while slots idle (288 runs, 4 slots,
    64 fit: 8 packs of 36 in two full waves, not 4 x 64 + 32)."""
    budget = PARAMS_PER_PACK["cuda" if device.type == "cuda" else "cpu"]
    fits = max(1, min(PACK_SIZE_CAP, budget // max(params_per_member, 1)))
    slots = max(slots, 1)
    packs = math.ceil(runs / fits)
    waves = math.ceil(packs / slots)
    return max(1, math.ceil(runs / (waves * slots)))


@dataclass
class PackEpoch:
    loss: Tensor  # [N] mean training loss per member
    acc: Tensor  # [N] training accuracy per member


Batch = tuple[Tensor, Tensor, Tensor]  # x [N, B, ...], labels [N, B], soft targets [N, B, C]


def train_packed_epoch(
    model: PackedModel,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor, Tensor], Tensor],
    progress: str | None = None,
    precision: str = "fp32",
) -> PackEpoch:
    """One pass: ``loss_fn(logits, labels, soft) -> [N]`` losses; their sum is minimized (the
    members' gradients do not mix). Sums stay on the device: one host sync per epoch.
    ``precision=bf16``: forward and loss under bf16 autocast (``harness/precision.py``)."""
    if progress is not None:
        batches = track(batches, progress, unit="batch", leave=False)
    model.train()
    total = correct = None
    seen = 0
    for x, y, soft in batches:
        with autocast(x.device, precision):
            logits = model(x)
            losses = loss_fn(logits, y, soft)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        b = y.shape[1]
        step_loss, step_correct = losses.detach().double() * b, (logits.argmax(-1) == y).sum(1)
        total = step_loss if total is None else total + step_loss
        correct = step_correct if correct is None else correct + step_correct
        seen += b
    if total is None:
        raise ValueError("the training split gave no batch")
    return PackEpoch((total / seen).cpu(), (correct.double() / seen).cpu())


@torch.no_grad()
def predict_packed(
    model: PackedModel, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device, precision: str = "fp32"
) -> tuple[Tensor, Tensor]:
    """Every member's logits on one data set [N, n, C] and its labels [n] (CPU tensors)."""
    model.eval()
    outs, ys = [], []
    for x, y in batches:
        with autocast(device, precision):
            outs.append(model(x.to(device, non_blocking=True), shared=True).float().cpu())
        ys.append(y.cpu())
    return torch.cat(outs, dim=1), torch.cat(ys)


def threads_of_pack(device: torch.device) -> int:
    """The torch threads a pack computes with on ``device`` (what its rows record). One on a CPU: a
    multi-threaded matrix product splits its sums by the shape it is given, so a pack of one
    would round differently from a pack of many; packs scale by running side by side."""
    return PACK_THREADS if device.type == "cpu" else torch.get_num_threads()


def pack_threads(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Compute with ``threads_of_pack(device)`` torch threads inside, the caller's outside."""
    return num_threads(threads_of_pack(device))
