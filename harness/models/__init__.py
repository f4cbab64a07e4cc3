"""Model zoo: CIFAR ResNets, Wide ResNets, MobileNetV2, 1-D CNNs and MLPs behind one registry.

``create_model(name, num_classes, input_shape, **kwargs)`` builds any registered model; every
model returns logits from ``forward`` and a :class:`FeatureOutput` (last conv stage, penultimate
features, logits) from ``forward_features``. Importing this package registers all families.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from harness.models import cnn1d, mlp, mobilenetv2, resnet, wrn  # noqa: F401  (registers models)
from harness.models.base import (
    MODELS,
    FeatureOutput,
    ZooModel,
    count_parameters,
    register_model,
)
from harness.models.cnn1d import CNN1d
from harness.models.mlp import MLP
from harness.models.mobilenetv2 import MobileNetV2
from harness.models.resnet import CifarResNet
from harness.models.wrn import WideResNet

__all__ = [
    "MODELS",
    "CNN1d",
    "CifarResNet",
    "FeatureOutput",
    "MLP",
    "MobileNetV2",
    "WideResNet",
    "ZooModel",
    "count_parameters",
    "create_model",
    "list_models",
    "register_model",
]


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return MODELS.names()


def create_model(name: str, num_classes: int, input_shape: Sequence[int], **kwargs: Any) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes and per-sample ``input_shape`` (no batch dim).

    ``input_shape`` is ``(C, L)`` for 1-D signals and ``(C, H, W)`` for images; extra keyword
    arguments go to the model (e.g. ``first_stride=2``, ``width_mult=0.5``). Raises KeyError for an
    unknown name and ValueError for an input rank the model does not handle.
    """
    factory = MODELS.get(name)
    if int(num_classes) < 1:
        raise ValueError(f"model {name!r}: num_classes must be >= 1, got {num_classes}")
    model = factory(int(num_classes), tuple(int(s) for s in input_shape), **kwargs)
    model.arch = name
    return model
