"""Multi-layer perceptrons: flatten any input shape, then Linear-ReLU hidden layers and a linear head.

``mlp_small`` (hidden 128-128; 40-128-128-10 on MNIST-1D) is the quickstart student. MLPs have no
conv stage, so ``FeatureOutput.conv`` is None and the penultimate features are the last hidden
activation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from harness.models.base import FeatureOutput, ZooModel, init_weights, register_model


class MLP(ZooModel):
    """Flatten -> [Linear-ReLU] * len(hidden) -> Linear."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        *,
        hidden: Sequence[int] = (128, 128),
        arch: str = "mlp",
    ) -> None:
        super().__init__()
        self.arch = arch
        shape = tuple(int(s) for s in input_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"model {arch!r} needs a non-empty, positive input_shape; got {shape}")
        if not hidden:
            raise ValueError(f"{arch}: needs at least one hidden layer")
        layers: list[nn.Module] = []
        width = math.prod(shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.hidden = nn.Sequential(*layers)
        self.feature_dim = width
        self.fc = nn.Linear(width, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> FeatureOutput:
        penultimate = self.hidden(torch.flatten(x, 1))
        return FeatureOutput(None, penultimate, self.fc(penultimate))


@register_model("mlp_tiny")
def mlp_tiny(num_classes: int, input_shape: Sequence[int], **kwargs) -> MLP:
    return MLP(num_classes, input_shape, hidden=(32,), arch="mlp_tiny", **kwargs)


@register_model("mlp_small")
def mlp_small(num_classes: int, input_shape: Sequence[int], **kwargs) -> MLP:
    return MLP(num_classes, input_shape, hidden=(128, 128), arch="mlp_small", **kwargs)


@register_model("mlp_large")
def mlp_large(num_classes: int, input_shape: Sequence[int], **kwargs) -> MLP:
    return MLP(num_classes, input_shape, hidden=(256, 256), arch="mlp_large", **kwargs)
