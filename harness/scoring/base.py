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

``Estimator.estimate`` adds error bars: one ``Estimate`` per checkpoint, its values plus ``[S, F]``
replicate values per key (``replicates.py``). The default is the delete-a-group jackknife over
the scoring sample's folds (``ScoringData.folds``), calling ``score`` on all rows but one fold at a
time; estimators that train something (``recon``) override it with seeds x folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

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
    ``folds``: ``[N]`` fold id (0..F-1) of every row, the replicates of every estimate (None: no
    error bars). ``train_x``: ``[M, *input_shape]`` rows of the *training* split, on which
    estimators that train something (the ``recon`` decoders) fit and stop early; None if unused.
    ``info``: JSON-friendly provenance (dataset, split, sizes, seed) written into the scores file.
    """

    x: Tensor
    y: Tensor
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)
    folds: Tensor | None = None
    train_x: Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")
        self.y = self.y.long()
        if self.folds is not None:
            self.folds = self.folds.long()
            if self.folds.shape[0] != self.y.shape[0]:
                raise ValueError(f"folds has {self.folds.shape[0]} rows but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_folds(self) -> int:
        """F, the number of folds (0 without folds)."""
        return 0 if self.folds is None else int(self.folds.max()) + 1

    def without_fold(self, f: int) -> tuple[ScoringData, Tensor]:
        """The sample without fold ``f`` (no folds, no training rows) and the kept row indices."""
        assert self.folds is not None
        keep = (self.folds != f).nonzero().flatten()
        return ScoringData(self.x[keep], self.y[keep], self.num_classes, self.info), keep


@dataclass
class CheckpointFeatures:
    """One checkpoint's outputs on the scoring sample (CPU float tensors, sample order)."""

    epoch: int
    logits: Tensor  # [N, num_classes]
    penultimate: Tensor  # [N, D]

    def rows(self, index: Tensor) -> CheckpointFeatures:
        """The same checkpoint's outputs on the rows ``index`` only."""
        return CheckpointFeatures(self.epoch, self.logits[index], self.penultimate[index])


@dataclass
class Estimate:
    """One checkpoint's result: ``values`` (reported), ``replicates`` ``{key: [S][F]}`` (module doc
    of ``replicates.py``) for the keys that carry an error bar."""

    values: dict[str, float]
    replicates: dict[str, list[list[float]]] = field(default_factory=dict)


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
    needs_train_rows: ClassVar[bool] = False  # trains on ``ScoringData.train_x`` (conv rows: train, then sample)
    x_key: ClassVar[str | None] = None
    y_key: ClassVar[str | None] = None
    plane_x_key: ClassVar[str | None] = None
    plane_y_key: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    # keys that are settings or diagnostics, not estimates: they get no replicates or error bar
    fixed_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_config(cls, sc: Any) -> Estimator:
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

    def estimate(
        self,
        features: Sequence[CheckpointFeatures],
        data: ScoringData,
        conv: ConvSource | None = None,
        device: torch.device | str = "cpu",
    ) -> list[Estimate]:
        """``score`` on the whole sample, plus jackknife replicates over ``data``'s folds."""
        from .replicates import jackknife_replicates

        full = self.score(features, data, conv, device)
        if data.folds is None or data.num_folds < 2:
            return [Estimate(values) for values in full]
        leave_out = []
        for f in range(data.num_folds):
            part, keep = data.without_fold(f)
            leave_out.append(self.score([c.rows(keep) for c in features], part, None, device))
        out = []
        for k, values in enumerate(full):
            keys = [key for key in values if key not in self.fixed_keys]
            reps = jackknife_replicates(values, [lo[k] for lo in leave_out], keys)
            out.append(Estimate(values, {key: [r] for key, r in reps.items()}))  # one seed: S = 1
        return out

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


class FittedEstimator(Estimator):
    """An estimator that fits something per checkpoint (``recon``, ``ridge``) and computes its
    replicates itself in ``estimate``; ``score`` is that estimate's values."""

    def score(
        self,
        features: Sequence[CheckpointFeatures],
        data: ScoringData,
        conv: ConvSource | None = None,
        device: torch.device | str = "cpu",
    ) -> list[dict[str, float]]:
        return [e.values for e in self.estimate(features, data, conv, device)]


def check_conv_inputs(
    name: str, features: Sequence[CheckpointFeatures], data: ScoringData, conv: ConvSource | None, min_rows: int = 1
) -> None:
    """What an estimator that fits a decoder on the conv stage needs (``recon``, ``ridge``): a conv
    source covering every checkpoint, and training-split rows to fit on."""
    if conv is None:
        raise ScoringError(f"{name} needs the checkpoints' last conv stage (a ConvSource)")
    if data.train_x is None or len(data.train_x) < min_rows:
        raise ScoringError(
            f"{name} needs training-split rows (ScoringData.train_x, at least {min_rows}) to fit its decoders on"
        )
    if conv.num_checkpoints != len(features):
        raise ValueError(f"conv source has {conv.num_checkpoints} checkpoints, features {len(features)}")
