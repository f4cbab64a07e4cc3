"""Per-fold sums behind the reconstruction estimators' values (``recon``, ``ridge``).

Both estimators reconstruct the input from the last conv stage and report, on the validation
scoring sample, statistics of the per-coordinate squared errors. They keep per-fold sums (row
counts, sums and sums of squares of every input coordinate, squared-error sums per coordinate),
so that a value on any set of folds, the whole sample or all folds but one (the jackknife of
``replicates.py``), is a cheap function of those sums.
"""

from __future__ import annotations

import torch
from torch import Tensor


def fold_moments(x: Tensor, folds: Tensor, n_folds: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per fold: row count [F], sum and sum of squares of every input coordinate [F, d]."""
    flat = x.reshape(len(x), -1).double()
    n = torch.bincount(folds, minlength=n_folds).double()
    sx = torch.zeros(n_folds, flat.shape[1], dtype=torch.float64).index_add_(0, folds, flat)
    sxx = torch.zeros_like(sx).index_add_(0, folds, flat * flat)
    return n, sx, sxx


def coordinate_stats(se: Tensor, n: Tensor, sx: Tensor, sxx: Tensor, keep: Tensor) -> dict[str, float]:
    """``mse`` (mean over coordinates of the mean squared error) and ``i_x`` (nats,
    sum_j max(0, 1/2 log(Var_j / MSE_j)), Var_j and MSE_j on the rows of the folds ``keep``,
    bool [F]) from per-fold sums: ``se`` [F, d] squared errors, ``n``, ``sx``, ``sxx`` as
    ``fold_moments``. Coordinates without variance on those rows are left out of ``i_x``."""
    rows = float(n[keep].sum())
    mse_j = se[keep].sum(0) / rows
    mean = sx[keep].sum(0) / rows
    var = (sxx[keep].sum(0) / rows - mean * mean).clamp_min(0)
    alive = var > 1e-12
    ratio = var[alive] / mse_j[alive].clamp_min(1e-12)
    return {"mse": float(mse_j.mean()), "i_x": float(0.5 * ratio.log().clamp_min(0).sum())}
