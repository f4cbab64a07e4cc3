"""Small entropy helpers shared by the estimators (all in nats)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def entropy_from_counts(counts: Tensor) -> float:
    """Plug-in entropy H = -sum_k p_k log p_k with p_k = counts_k / sum(counts)."""
    counts = counts[counts > 0].double()
    p = counts / counts.sum()
    return float(-(p * p.log()).sum())


def label_entropy(y: Tensor) -> float:
    """Plug-in H(Y) of integer labels (the scoring sample's class frequencies)."""
    return entropy_from_counts(torch.bincount(y.long().flatten()))


def binary_entropy(p: float) -> float:
    """h_b(p) = -p log p - (1 - p) log(1 - p)."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log(p) - (1 - p) * math.log(1 - p)


def standardize(f: Tensor, unit_total_variance: bool = True) -> Tensor:
    """z-score every column of ``f`` [N, D] (constant columns become 0).

    With ``unit_total_variance`` the result is also divided by sqrt(D'), D' = number of
    non-constant columns, so that E||f_i - mean||^2 = 1 whatever the width D: a noise variance
    (KDE) or bin width (binning) then means the same thing for a 64- and a 640-wide layer.
    """
    f = f.double()
    mean = f.mean(0, keepdim=True)
    std = f.std(0, unbiased=False, keepdim=True)
    alive = std.squeeze(0) > 1e-12
    z = torch.where(alive, (f - mean) / std.clamp_min(1e-12), torch.zeros_like(f))
    if unit_total_variance:
        z = z / math.sqrt(max(int(alive.sum()), 1))
    return z
