"""Packed models: N networks of one architecture trained as one vectorized model.

A checkpoint-KD study multiplies small students (checkpoint x ensemble x T x kd_weight x seed),
and one small student leaves a CPU core or a GPU mostly idle: its matrix products are too small
to reach the hardware's rate. ``PackedModel`` stacks the weights of N members
(``torch.func.stack_module_state``) and runs them with ``vmap(functional_call)``: every layer
becomes one batched kernel over the N members. The members share no parameter, SGD (momentum,
Nesterov, weight decay) is elementwise and the loss is the sum of the members' losses, so each
member follows the path it would follow alone, up to floating-point rounding of the batched
kernels. BatchNorm works: its running statistics are stacked buffers updated in place per member.

``train_packed_epoch`` and ``predict_packed`` are the epoch loop and the evaluation of a pack;
building, training and shrinking packs of students is ``harness/student_pack.py``'s, and what
a member learns from (its batches, labels, soft targets) ``harness/student_batches.py``'s.
A pack of one member is the same code path, not a second one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from harness.precision import autocast
from harness.progress import track

PACK_SIZE_CAP = 64  # members per pack at most (auto)
PARAMS_PER_PACK = {"cpu": 4_000_000, "cuda": 200_000_000}  # auto: members x parameters per pack at most


class PackedModel:
    """N models of one architecture as stacked tensors; ``__call__`` runs all of them at once."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ValueError("a pack needs at least one model")
        self.size = len(models)
        self.template = copy.deepcopy(models[0]).to("meta")
        self.module: nn.Module | None = None
        if self.size == 1:  # the member itself, its tensors seen as stacks of one (views, no copy)
            self.module = models[0]
            self.params = {k: p.unsqueeze(0) for k, p in self.module.named_parameters()}
            self.buffers = {k: b.unsqueeze(0) for k, b in self.module.named_buffers()}
        else:
            self.params, self.buffers = stack_module_state(list(models))

    def _call(self, params: dict, buffers: dict, x: Tensor) -> Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def __call__(self, x: Tensor, shared: bool = False) -> Tensor:
        """Logits [N, B, C]; ``x`` is [N, B, ...] (one batch per member) or, ``shared``, [B, ...].
        A pack of one calls its member module directly (vmap's and functional_call's per-call
        overhead made a lone student 1.4x slower than before packs); batches, loss, optimizer,
        state and rows are the same code path."""
        if self.module is not None:
            return self.module(x if shared else x[0]).unsqueeze(0)
        fn = vmap(self._call, in_dims=(0, 0, None if shared else 0), randomness="different")
        return fn(self.params, self.buffers, x)

    def parameters(self) -> list[Tensor]:
        """The leaf tensors an optimizer updates (a pack of one: its module's own parameters)."""
        return list(self.module.parameters()) if self.module is not None else list(self.params.values())

    def train(self, mode: bool = True) -> PackedModel:
        self.template.train(mode)
        if self.module is not None:
            self.module.train(mode)
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
    budget per pack: small MLPs pack by the dozen, a WRN on a CPU hardly), but no more than
    spreads the runs evenly over the trial slots (so every slot gets a pack)."""
    budget = PARAMS_PER_PACK["cuda" if device.type == "cuda" else "cpu"]
    fits = max(1, min(PACK_SIZE_CAP, budget // max(params_per_member, 1)))
    return max(1, min(fits, math.ceil(runs / max(slots, 1))))


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
