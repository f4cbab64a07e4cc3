"""What every MI estimator shares: the registry, the scoring sample, the per-checkpoint features.

An estimator scores *all* checkpoints of one trajectory at once (``Estimator.score``), so that
estimators which train something (the ``recon`` decoders) can train it for every checkpoint side
by side. Its result is one flat ``{key: float}`` dict per checkpoint. Two class attributes say
which keys the selection rules use:

- ``x_key``: the I(X;F) term, oriented so that *higher = more information* (e.g. ``recon``
  exposes the negated reconstruction loss), or None if the estimator has no I(X;F) term;
- ``y_key``: the I(Y;F) term, same orientation.

``plane_x_key`` / ``plane_y_key`` name the values in nats that the information plane plots
(they default to ``x_key`` / ``y_key``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Sequence

import torch
from torch import Tensor

from harness.registry import Registry


class ScoringError(ValueError):
    """Scoring cannot run as configured (unknown estimator, model without a conv stage, ...)."""


@dataclass
class ScoringData:
    """The fixed scoring sample shared by every checkpoint of a trajectory.

    ``x``: ``[N, *input_shape]`` model inputs (as the models see them, i.e. normalized);
    ``y``: ``[N]`` int64 labels; both drawn from the *validation* split.
    ``info``: JSON-friendly provenance (dataset, split, sizes, seed) written into the scores file.
    """

    x: Tensor
    y: Tensor
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")
        self.y = self.y.long()

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class CheckpointFeatures:
    """One checkpoint's outputs on the scoring sample (CPU float tensors, sample order)."""

    epoch: int
    logits: Tensor  # [N, num_classes]
    penultimate: Tensor  # [N, D]


class ConvSource(Protocol):
    """Last-conv-stage features of K checkpoints, fetched batch by batch.

    ``batch(index)`` returns ``[K, B, C, *spatial]`` for the samples ``index`` (a 1-D int64
    tensor), either sliced from a cache or computed by running all K frozen models on one batch
    of inputs, so each batch of data is loaded once and fed to every checkpoint.
    """

    num_checkpoints: int

    def batch(self, index: Tensor) -> Tensor: ...


class Estimator:
    """Base class. Subclasses set ``name`` (via ``@register_estimator``), keys, and ``score``."""

    name: ClassVar[str] = "unnamed"
    needs_conv: ClassVar[bool] = False
    x_key: ClassVar[str | None] = None
    y_key: ClassVar[str | None] = None
    plane_x_key: ClassVar[str | None] = None
    plane_y_key: ClassVar[str | None] = None
    description: ClassVar[str] = ""

    @classmethod
    def from_config(cls, sc: Any) -> "Estimator":
        """Build from a ``ScoringConfig``; estimators with hyperparameters override this."""
        return cls()

    def params(self) -> dict[str, Any]:
        """Hyperparameters (JSON-friendly); they key the scores cache and go into the file."""
        return {}

    def score(
        self,
        features: Sequence[CheckpointFeatures],
        data: ScoringData,
        conv: ConvSource | None = None,
        device: torch.device | str = "cpu",
    ) -> list[dict[str, float]]:
        """One result dict per checkpoint, in the order of ``features``."""
        raise NotImplementedError

    @classmethod
    def plane_keys(cls) -> tuple[str | None, str | None]:
        return (cls.plane_x_key or cls.x_key, cls.plane_y_key or cls.y_key)


ESTIMATORS: Registry[type[Estimator]] = Registry("MI estimator")


def register_estimator(name: str):
    """Class decorator: ``@register_estimator("kde")`` sets ``cls.name`` and registers it."""

    def add(cls: type[Estimator]) -> type[Estimator]:
        cls.name = name
        return ESTIMATORS.register(name)(cls)

    return add


def list_estimators() -> list[str]:
    return ESTIMATORS.names()


def build_estimator(name: str, sc: Any) -> Estimator:
    """The estimator ``name`` with its hyperparameters from the ``ScoringConfig`` ``sc``."""
    try:
        cls = ESTIMATORS.get(name)
    except KeyError as e:
        raise ScoringError(str(e).strip("'\"")) from None
    return cls.from_config(sc)


class TensorConvSource:
    """A ``ConvSource`` over precomputed conv features ``[K, N, C, *spatial]`` (or a list of K)."""

    def __init__(self, conv: Tensor | Sequence[Tensor]) -> None:
        self.conv = conv if isinstance(conv, Tensor) else torch.stack(list(conv))
        self.num_checkpoints = int(self.conv.shape[0])

    def batch(self, index: Tensor) -> Tensor:
        return self.conv[:, index.to(self.conv.device)]
