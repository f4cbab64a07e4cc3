"""``binning``: the classic information-plane estimator (Shwartz-Ziv & Tishby 2017), in nats.

The penultimate features are z-scored per unit and cut into ``bins`` equal-width bins spanning
their global [min, max]; each sample's vector of bin indices is one discrete symbol T. The
network is deterministic and the inputs are distinct, so H(T|X) = 0 and, with plug-in entropies
on the scoring sample,

    I(X;T) = H(T)                                   (``i_x``)
    I(T;Y) = H(T) - sum_c p_c H(T | Y=c)            (``i_y``)

Known biases (tested): the result depends on the bins, not only on the network. More bins or
wider layers give more distinct symbols, so both terms grow with ``bins`` until every sample is
its own symbol, where they saturate at H(T) = log N and I(T;Y) = H(Y). The plug-in I(T;Y) is
biased upwards by about (#symbols - 1)(C - 1) / (2N) nats, so independent features give a
small positive value rather than 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import CheckpointFeatures, ConvSource, Estimator, ScoringData, register_estimator
from .entropy import entropy_from_counts, standardize


def bin_symbols(features: Tensor, bins: int) -> Tensor:
    """One int64 symbol per row: the id of its vector of per-unit bin indices."""
    z = standardize(features.reshape(features.shape[0], -1), unit_total_variance=False)
    lo, hi = float(z.min()), float(z.max())
    if hi - lo < 1e-12:
        return torch.zeros(z.shape[0], dtype=torch.long)
    codes = ((z - lo) / (hi - lo) * bins).floor().clamp(0, bins - 1).long()
    return torch.unique(codes, dim=0, return_inverse=True)[1]


def binned_mutual_information(features: Tensor, labels: Tensor | None, bins: int) -> dict[str, float]:
    """``{"i_x": H(T), "i_y": I(T;Y), "symbols": distinct T}`` (nats); ``labels`` may be None."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    t = bin_symbols(features.cpu(), bins)
    h_t = entropy_from_counts(torch.bincount(t))
    out = {"i_x": h_t, "symbols": float(int(t.max()) + 1)}
    if labels is not None:
        y = labels.long().cpu()
        n = y.shape[0]
        cond = 0.0
        for c in torch.unique(y):
            members = y == c
            cond += float(members.sum()) / n * entropy_from_counts(torch.bincount(t[members]))
        out["i_y"] = h_t - cond
    return out


@register_estimator("binning")
class BinningEstimator(Estimator):
    """Keys: ``i_x`` = H(T), ``i_y`` = I(T;Y) (nats), ``symbols`` = distinct binned vectors."""

    x_key = "i_x"
    y_key = "i_y"
    description = "equal-width binning of z-scored penultimate features, plug-in entropies"
    fixed_keys = frozenset({"bins"})

    def __init__(self, bins: int = 30) -> None:
        if bins < 2:
            raise ValueError(f"binning bins must be >= 2, got {bins}")
        self.bins = int(bins)

    @classmethod
    def from_config(cls, sc) -> BinningEstimator:
        return cls(bins=sc.binning_bins)

    def params(self) -> dict:
        return {"bins": self.bins}

    def score(
        self,
        features: Sequence[CheckpointFeatures],
        data: ScoringData,
        conv: ConvSource | None = None,
        device: torch.device | str = "cpu",
    ) -> list[dict[str, float]]:
        return [
            {**binned_mutual_information(f.penultimate, data.y, self.bins), "bins": float(self.bins)} for f in features
        ]
