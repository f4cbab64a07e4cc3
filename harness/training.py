"""Epoch loops shared by teachers and students: optimizer, LR schedule, train step, evaluation."""

from __future__ import annotations

import contextlib
import math
import random
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.precision import autocast, to_memory_format
from harness.progress import track


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks the GPU Ray (or CUDA_VISIBLE_DEVICES) assigned us, else the CPU.

    In a Ray worker that Ray gave no GPU, ``auto`` is the CPU even on a GPU node: Ray 2.60 no
    longer hides the node's GPUs from ``num_gpus=0`` workers, so CUDA alone would lie.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and not ray_gave_no_gpu() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} but no CUDA GPU is visible; use device=auto or cpu")
    return device


def ray_gave_no_gpu() -> bool:
    """True inside a Ray worker (actor, task, Tune trial) to which Ray assigned no GPU."""
    ray = sys.modules.get("ray")  # never import Ray here: the core runs without it
    if ray is None or not ray.is_initialized():
        return False
    ctx = ray.get_runtime_context()
    if getattr(getattr(ctx, "worker", None), "mode", None) != ray.WORKER_MODE:
        return False  # the driver: whatever this machine has
    return not ray.get_gpu_ids()


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the caller's."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs (torch: every device) from ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed per (run, epoch): a run resumed at an epoch boundary replays the same randomness."""
    return (seed * 1_000_003 + epoch * 7919) % 2**31


def make_optimizer(model: nn.Module, optim_cfg, fused: bool = False) -> torch.optim.SGD:
    """SGD per ``optim_cfg``. ``fused``: one kernel per parameter tensor for the whole update (the
    same update; 5-20x faster on a pack's large stacked tensors, where the unfused update is a
    third of the step; student packs, whose stored parameters are padded for it: packed_layers.py)."""
    return torch.optim.SGD(
        model.parameters(),
        lr=optim_cfg.lr,
        momentum=optim_cfg.momentum,
        nesterov=optim_cfg.nesterov and optim_cfg.momentum > 0,
        weight_decay=optim_cfg.weight_decay,
        fused=fused or None,
    )


def lr_factor(optim_cfg, epochs: int) -> Callable[[int], float]:
    """Per-epoch LR multiplier: cosine to 0, step (x gamma at milestone fractions) or constant."""
    schedule = optim_cfg.schedule
    milestones = [round(m * epochs) for m in optim_cfg.milestones]
    gamma = optim_cfg.gamma

    def factor(epoch: int) -> float:
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
        if schedule == "step":
            return gamma ** sum(epoch >= m for m in milestones)
        return 1.0

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, optim_cfg, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(optim_cfg, epochs))


@dataclass
class EpochResult:
    loss: float
    acc: float


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor, Tensor], Tensor],
    device: torch.device,
    targets_of: Callable[[Tensor, Tensor], Tensor] = lambda x, y: y,
    progress: str | None = None,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
) -> EpochResult:
    """One pass over ``batches``; ``loss_fn(logits, x, y)`` lets KD look up soft targets by batch.

    ``targets_of(x, y)`` gives the class labels used for the accuracy (KD batches carry sample
    indices in ``y`` and map them to labels). ``progress``: a label, to show progress within
    the epoch (a bar, or a log line every few seconds for epochs that take that long).
    ``precision`` (fp32 | bf16) and ``channels_last`` (image inputs NHWC; pass a model prepared
    with ``harness.precision.prepare_model``) are as in ``harness/precision.py``; the forward
    pass and the loss run under the autocast, the backward pass and the step outside it.
    """
    if progress is not None:
        batches = track(batches, progress, unit="batch", leave=False)
    model.train()
    # Sums stay on the device: one host sync per epoch instead of two per step on a GPU.
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = to_memory_format(x, channels_last)
        with autocast(device, precision):
            logits = model(x)
            loss = loss_fn(logits, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = x.shape[0]
        total_loss += loss.detach().double() * n
        correct += (logits.argmax(1) == targets_of(x, y)).sum()
        seen += n
    return EpochResult(total_loss.item() / max(seen, 1), correct.item() / max(seen, 1))


@torch.no_grad()
def predict_logits(
    model: nn.Module | Callable[[Tensor], Tensor],
    batches: Iterable[tuple[Tensor, Tensor]],
    device: torch.device,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[Tensor, Tensor]:
    """All logits and labels of a data set, in loader order (CPU tensors, logits fp32).

    ``precision`` / ``channels_last``: as in ``train_epoch`` (defaults: fp32, contiguous)."""
    if isinstance(model, nn.Module):
        model.eval()
    outs, ys = [], []
    for x, y in batches:
        x = to_memory_format(x.to(device, non_blocking=True), channels_last)
        with autocast(device, precision):
            outs.append(model(x).float().cpu())
        ys.append(y.cpu())
    return torch.cat(outs), torch.cat(ys)


def metrics_from_logits(logits: Tensor, y: Tensor, prefix: str) -> dict[str, float]:
    """Accuracy, mean cross-entropy and mean max-softmax confidence."""
    probs = F.softmax(logits, dim=1)
    return {
        f"{prefix}_acc": (logits.argmax(1) == y).float().mean().item(),
        f"{prefix}_loss": F.cross_entropy(logits, y).item(),
        f"{prefix}_confidence": probs.max(1).values.mean().item(),
    }


def metrics_from_probs(probs: Tensor, y: Tensor, prefix: str) -> dict[str, float]:
    """Same as ``metrics_from_logits`` for an ensemble that gives probabilities."""
    return {
        f"{prefix}_acc": (probs.argmax(1) == y).float().mean().item(),
        f"{prefix}_loss": F.nll_loss(probs.clamp_min(1e-12).log(), y).item(),
        f"{prefix}_confidence": probs.max(1).values.mean().item(),
    }
