"""Replicates, standard errors and selection stability of the MI scores.

Every estimate of a checkpoint comes with an ``[S, F]`` array of *replicate values*: S decoder
seeds (``scoring.recon.seeds`` for ``recon``; 1 for estimators that train nothing) x F folds of
the validation scoring sample (``scoring.folds``). The folds are the same rows for every
checkpoint and every estimator, so replicates are *paired* across checkpoints.

**Fold replicates** are delete-a-group jackknife pseudo-values (Quenouille / Tukey):

    p_f = F * theta - (F - 1) * theta_(-f)

with theta the estimate on the whole sample and theta_(-f) the estimate without fold f. For an
estimate that is a mean over samples (accuracy, cross-entropy, recon's BCE) and equal folds, p_f
is exactly the mean over fold f; for nonlinear ones (kde, binning, recon's ``i_x``) it extends
that without computing them on one small fold (they depend strongly on the sample size). The
reported value stays theta (no jackknife bias correction).

**Standard error** of the reported value (two-way crossed design, slightly conservative):

    SE^2 = var_s(mean over folds) / S + var_f(mean over seeds) / F        (sample variances)

**Selection confidence** (paired bootstrap): B times, draw F folds with replacement (one draw for
all estimators and checkpoints: the same validation rows) and S seeds with replacement per
trained estimator; a term's value is ``theta + mean(drawn cells) - mean(all cells)`` (recentred
on the reported value); normalize and combine the terms as the selection does
(``selection.selector_scores``) and take the argmax (ties: earlier epoch). The fraction of draws
in which checkpoint e wins is P(e is T*). A pick below 0.5 is *unstable*.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .normalization import normalize

UNSTABLE_BELOW = 0.5


def jackknife_replicates(
    full: Mapping[str, float], leave_out: Sequence[Mapping[str, float]], keys: Iterable[str]
) -> dict[str, list[float]]:
    """Pseudo-values ``F * theta - (F - 1) * theta_(-f)`` per key, one per left-out fold."""
    f = len(leave_out)
    out = {}
    for key in keys:
        theta = float(full[key])
        out[key] = [f * theta - (f - 1) * float(lo[key]) for lo in leave_out]
    return out


def standard_error(reps: Sequence[Sequence[float]] | np.ndarray) -> float:
    """SE of the reported value from its ``[S, F]`` replicate array (module doc); NaN if unknown."""
    r = np.asarray(reps, dtype=np.float64)
    if r.ndim != 2 or r.size == 0 or not np.isfinite(r).all():
        return math.nan
    s, f = r.shape
    var = 0.0
    if s > 1:
        var += float(r.mean(axis=1).var(ddof=1)) / s
    if f > 1:
        var += float(r.mean(axis=0).var(ddof=1)) / f
    return math.sqrt(var) if (s > 1 or f > 1) else math.nan


def fold_weights(rng: np.random.Generator, draws: int, folds: int) -> np.ndarray:
    """``[draws, folds]``: how often each fold is drawn (with replacement), divided by ``folds``."""
    idx = rng.integers(0, folds, size=(draws, folds))
    counts = np.zeros((draws, folds))
    np.add.at(counts, (np.arange(draws)[:, None], idx), 1.0)
    return counts / folds


def resampled_term(point: np.ndarray, reps: np.ndarray, seed_w: np.ndarray, fold_w: np.ndarray) -> np.ndarray:
    """``[B, K]`` bootstrap values of one term: ``point [K]`` + drawn-cell mean - all-cell mean.

    ``reps`` ``[K, S, F]``; ``seed_w`` ``[B, S]`` and ``fold_w`` ``[B, F]`` are draw weights."""
    drawn = np.einsum("ksf,bs,bf->bk", reps, seed_w, fold_w)
    return point[None, :] + drawn - reps.mean(axis=(1, 2))[None, :]


def argmax_earliest(scores: np.ndarray, decimals: int) -> np.ndarray:
    """Per row of ``[B, K]`` the index of the highest score (rounded; NaN loses; ties: first)."""
    s = np.round(np.where(np.isfinite(scores), scores, -np.inf), decimals)
    return s.argmax(axis=1)


def normalize_rows(values: np.ndarray, method: str) -> np.ndarray:
    """``normalize`` applied to every row of ``[B, K]`` (one bootstrap draw per row); min-max
    (the default) as array operations, the same float operations per element as ``minmax``."""
    if method == "minmax":
        return _minmax_rows(np.asarray(values, dtype=np.float64))
    return np.array([normalize(list(row), method) for row in values], dtype=np.float64)


def _minmax_rows(v: np.ndarray) -> np.ndarray:
    """Row-wise ``normalization.minmax``: NaN for non-finite entries, 0 for a flat row."""
    finite = np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(finite, v, np.inf).min(axis=1, keepdims=True)
        hi = np.where(finite, v, -np.inf).max(axis=1, keepdims=True)
        span = hi - lo
        flat = span <= 1e-12 * np.maximum(1.0, np.abs(hi))
        out = np.where(flat, 0.0, (v - lo) / np.where(flat, 1.0, span))
    return np.where(finite, out, np.nan)


def summarize_draws(picks: np.ndarray, epochs: Sequence[int]) -> dict[str, float]:
    """``{epoch: fraction of draws picking it}`` for every epoch (JSON keys: strings)."""
    counts = np.bincount(picks, minlength=len(epochs)) / max(len(picks), 1)
    return {str(e): round(float(c), 4) for e, c in zip(epochs, counts)}
