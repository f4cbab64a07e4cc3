"""What every model in the zoo shares: the registry, the feature output, and small helpers.

Each architecture family lives in its own module and registers factories here. A factory takes
``(num_classes, input_shape, **kwargs)`` and returns a :class:`ZooModel`, whose ``forward`` gives
logits and whose ``forward_features`` also exposes the last conv stage (for the MI scorer's
reconstruction decoder) and the pooled penultimate features (for KD and feature-based scorers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from harness.registry import Registry

ModelFactory = Callable[..., "ZooModel"]

MODELS: Registry[ModelFactory] = Registry("model")
register_model = MODELS.register


class FeatureOutput(NamedTuple):
    """All of a model's outputs from one forward pass."""

    conv: Tensor | None
    """Last conv stage before global pooling: [N,C,H,W] or [N,C,L]; None for MLPs."""
    penultimate: Tensor
    """Pooled features fed to the classifier: [N,D]."""
    logits: Tensor
    """Classifier output: [N,num_classes]."""


class ZooModel(nn.Module):
    """Base class: subclasses implement ``forward_features``; ``forward`` returns its logits.

    Routing ``forward`` through ``forward_features`` guarantees that both use the same layers and
    agree exactly.
    """

    arch: str = "unnamed"
    feature_dim: int

    def forward_features(self, x: Tensor) -> FeatureOutput:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x).logits


def check_input_shape(arch: str, input_shape: Sequence[int], rank: int, layout: str) -> tuple[int, ...]:
    """Return ``input_shape`` as a tuple, or raise ValueError if it does not have ``rank`` dims.

    ``layout`` names the dims (e.g. ``"(C, H, W)"``) so the message says what was expected.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != rank:
        kind = {2: "1-D signals", 3: "2-D images"}.get(rank, f"rank-{rank} inputs")
        raise ValueError(
            f"model {arch!r} is for {kind} and expects input_shape of rank {rank} {layout} "
            f"(per sample, without batch); got {shape} of rank {len(shape)}"
        )
    if any(s < 1 for s in shape):
        raise ValueError(f"model {arch!r}: input_shape must be positive, got {shape}")
    return shape


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, ReLU), unit/zero BatchNorm, zero Linear biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def global_avg_pool(x: Tensor) -> Tensor:
    """Average over every spatial/temporal dim: [N,C,...] -> [N,C]. Works for any H, W or L."""
    return torch.flatten(x, 2).mean(dim=2)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (all of them, trainable or not)."""
    return sum(p.numel() for p in model.parameters())
