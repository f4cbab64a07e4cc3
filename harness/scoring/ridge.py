"""``ridge``: I(X;F) from a linear decoder of the input, fitted in closed form on the last conv stage.

The cheap sibling of ``recon`` (the paper's trained conv decoder): the same tap (the checkpoint's
last conv stage, ``forward_features().conv``, flattened to D features), the same idea (the better
the input can be reconstructed from F, the more F knows about X), but the decoder is *linear* and
fitted by ridge regression in closed form instead of trained with Adam.

**Rows**, split as recon's: ``scoring.ridge.seeds`` decoders per checkpoint, each fitted on its
own ``scoring.ridge.train_samples`` rows drawn (with ``scoring.seed`` and the decoder's index)
from the scoring sample's training-split pool (``sample.py``: the largest pool any configured
estimator needs, ``train_samples x seeds`` for ridge, so adding ``recon`` changes which rows are
drawn; the pool size is in the settings hash), of which ``holdout_fraction`` are held out to
choose that decoder's penalty (the analog of recon's stopping rows); the values are reported on
the validation scoring sample, which takes no part in fitting or choosing, and averaged over
the decoders.

**Targets**: the input flattened to d coordinates, each centred and scaled with the whole
pool's mean and standard deviation (training rows; coordinates constant there are dropped). **Features**:
centred with the fit rows' mean. **Solve**: W = argmin ||Y - F W||^2 / n + lam ||W||^2 with
lam = penalty x (mean eigenvalue of the fit rows' feature covariance), for every penalty of the
grid ``scoring.ridge.penalties``, through the dual (n x n Gram) when n <= D, else the primal
(D x D): one float64 Cholesky factorization per penalty (measured faster than one eigendecomposition
for n = 800, D = 1280 on 1 thread: 7 factorizations 50 ms vs 103 ms). The penalty with the least
held-out MSE wins (ties: the larger). The Gram's products run in float32 (``GRAM_DTYPE``: half
the time; rounding ~1e-6 of the largest eigenvalue), everything else in float64; a penalty whose
system is not positive definite is skipped. Every step is a fixed sequence of operations chosen
by the shapes only, so results are bit-identical run to run at fixed threads (``threads``).

**Reported** (validation sample, sums per fold as recon's, ``fold_stats.py``):

- ``i_x`` (the selection and plane term, nats) = sum_j max(0, 1/2 log(Var_j / MSE_j)) over the
  input coordinates. For jointly Gaussian (X, F) the linear decoder is the MMSE decoder, so
  1/2 log(Var_j / MSE_j) = I(X_j; F) per coordinate, and I(X; F) = 1/2 log det(S_X) - 1/2 log
  det(S_R) (S_R the residual covariance). With independent input coordinates (S_X diagonal)
  Hadamard's inequality (det S_R <= prod_j MSE_j) makes the sum a lower bound of I(X; F), exact
  when the residuals are uncorrelated (e.g. a diagonal channel F_j = X_j + noise). Otherwise, as
  recon's ``i_x``, it is a proxy (redundant coordinates count twice), monotone in the
  per-coordinate errors: lower error = more information, the paper's reading of recon's loss;
- ``mse``: mean validation MSE of the standardized inputs (1 = no better than the mean);
  ``neg_mse`` = -mse;
- diagnostics (``fixed_keys``, no error bar): ``penalty`` (the decoders' chosen relative penalties, their mean),
  ``n_fit`` (fit rows), ``converged`` (always 1.0: a closed form has nothing to converge; kept so
  the scores file reads as recon's), ``seeds`` (decoders), ``threads``.

**Replicates**: ``[seeds x folds]`` as recon's: per decoder, delete-a-fold jackknife
pseudo-values over the scoring sample's folds from the per-fold sums
(``replicates.jackknife_replicates``). The decoders' own rows differ, so the noise of choosing
the fit rows is in the error bars (the selection bootstrap draws decoders as it draws recon's
seeds); with one decoder it would not be: five draws of 1,000 rows moved a checkpoint's ``i_x``
by about its fold SE. Two decoders of 500 rows (the default) ranked the checkpoints of a
cnn1d_wide trajectory as three of 1,000 rows did (Spearman 1.0; three of 500: 0.98, three of
400: 0.95) at a third of the cost (benchmarks/README.md, issue 23).

**Cost**: per checkpoint and decoder one float32 Gram of the fit rows (n^2 D multiply-adds)
and one float64 Cholesky factorization per penalty, no training: a fraction of a second for a
quickstart trajectory (benchmarks/bench_scorer_cost.py), against ~52-67 s for recon's decoders
on the same trajectory. ``recon`` stays available (selector ``paper_recon``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import (
    CheckpointFeatures,
    ConvSource,
    Estimate,
    FittedEstimator,
    ScoringData,
    ScoringError,
    check_conv_inputs,
    register_estimator,
)
from .fold_stats import coordinate_stats, fold_moments
from .replicates import jackknife_replicates

FETCH_ROWS = 1024  # conv rows fetched per batch from the source
GRAM_DTYPE = torch.float32  # the Gram's products (module doc); everything else float64


@dataclass(frozen=True)
class RidgeSettings:
    train_samples: int = 1000  # training-split rows drawn from the pool: fit + held out
    holdout_fraction: float = 0.2  # of those: held out to choose the penalty
    penalties: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # x mean eigenvalue
    seed: int = 0
    seeds: int = 2  # decoders per checkpoint, each on its own rows (replicates)


def split_rows(pool: int, s: RidgeSettings, replicate: int = 0) -> tuple[Tensor, Tensor]:
    """(fit, held-out) row indices into a pool of ``pool`` training rows for decoder ``replicate``,
    drawn with (``s.seed``, replicate): a random ``train_samples`` of them, of which a random
    ``holdout_fraction`` (>= 2 each side)."""
    gen = torch.Generator().manual_seed(s.seed * 1_000_003 + 7 + 7919 * replicate)
    perm = torch.randperm(pool, generator=gen)[: s.train_samples]
    n_hold = min(max(2, round(s.holdout_fraction * len(perm))), len(perm) - 2)
    return perm[n_hold:].sort().values, perm[:n_hold].sort().values


@dataclass
class _Fit:
    """One checkpoint's decoder on the eval rows: residuals [N, d] and the chosen penalty."""

    residual: Tensor
    penalty: float


def _cholesky(gram: Tensor, lam: float) -> Tensor | None:
    """Cholesky factor of ``gram + lam I`` (float64), None if it is not positive definite."""
    a = gram.clone()
    a.diagonal().add_(lam)
    chol, info = torch.linalg.cholesky_ex(a)
    return None if int(info) != 0 else chol


def fit_decoder(
    phi: Tensor, y: Tensor, fit: Tensor, hold: Tensor, eval_rows: Tensor, penalties: Sequence[float]
) -> _Fit:
    """Fit on ``fit`` rows for every penalty, choose on ``hold``, residuals on ``eval_rows``.

    Features are centred in float64 and multiplied in ``GRAM_DTYPE`` (the Gram and the held-out
    rows' cross products: the bulk of the flops); factorizations and solves are float64."""
    fit_rows = phi[fit].double()
    mu = fit_rows.mean(0)
    a, h = (fit_rows - mu).to(GRAM_DTYPE), (phi[hold].double() - mu).to(GRAM_DTYPE)
    n, dim = a.shape
    dual = n <= dim
    gram = (a @ a.T if dual else a.T @ a).double()
    scale = float(gram.diagonal().sum()) / (n * dim)  # mean eigenvalue of the feature covariance
    if scale <= 0:  # constant features: the decoder predicts the mean
        return _Fit(-y[eval_rows], float(max(penalties)))
    y_fit, y_hold = y[fit], y[hold]
    cross = (h @ a.T).double() if dual else h.double()  # held-out rows against fit rows (dual) or features
    rhs = y_fit if dual else a.double().T @ y_fit
    best, best_coef, best_p = math.inf, None, float(max(penalties))
    for p in sorted(penalties):
        chol = _cholesky(gram, p * scale * n)
        if chol is None:  # not positive definite at this penalty in float64: skipped
            continue
        coef = torch.cholesky_solve(rhs, chol)  # dual: alpha [n, d]; primal: W [D, d]
        loss = float((cross @ coef - y_hold).pow(2).mean())
        if loss <= best:  # ties: the larger penalty
            best, best_coef, best_p = loss, coef, float(p)
    if best_coef is None:
        raise ScoringError("ridge: no penalty of scoring.ridge.penalties gave a positive definite system")
    return _Fit(_predict(phi[eval_rows].double() - mu, a, best_coef, dual) - y[eval_rows], best_p)


def _predict(e: Tensor, a: Tensor, coef: Tensor, dual: bool) -> Tensor:
    """Predictions for the centred rows ``e``: primal ``e W``; dual through the weights ``a^T alpha``
    or the kernel ``(e a^T) alpha``, whichever takes fewer multiply-adds (wide inputs, e.g. images:
    the kernel; a fixed function of the shapes, never of the machine)."""
    if not dual:
        return e @ coef
    (n_eval, dim), n, d = e.shape, a.shape[0], coef.shape[1]
    if dim * d * (n + n_eval) <= n_eval * n * (dim + d):
        return e @ (a.double().T @ coef)
    return (e.to(GRAM_DTYPE) @ a.T).double() @ coef


def standardized_targets(x: Tensor, fit: Tensor) -> Tensor:
    """Inputs flattened to [N, d] in float64, centred and scaled with the ``fit`` rows' mean and
    std per coordinate (the estimator passes the whole training pool); coordinates constant on
    those rows are dropped."""
    flat = x.reshape(len(x), -1).double()
    mean, std = flat[fit].mean(0), flat[fit].std(0)
    keep = std > 1e-12 * (1 + mean.abs())
    return (flat[:, keep] - mean[keep]) / std[keep]


def _conv_rows(conv: ConvSource, rows: int) -> Tensor:
    """[K, rows, D] float32 CPU: the flattened conv stage of rows 0..rows-1 of the source."""
    parts = []
    for start in range(0, rows, FETCH_ROWS):
        b = conv.batch(torch.arange(start, min(start + FETCH_ROWS, rows)))
        parts.append(b.reshape(b.shape[0], b.shape[1], -1).float().cpu())
    return torch.cat(parts, dim=1)


@register_estimator("ridge")
class RidgeEstimator(FittedEstimator):
    """Keys: ``i_x`` (nats, selection and plane term), ``mse``, ``neg_mse``, and the diagnostics
    ``penalty``, ``n_fit``, ``converged``, ``seeds``, ``threads``."""

    needs_conv = True
    needs_train_rows = True
    x_key = "i_x"
    plane_x_key = "i_x"
    description = "closed-form linear decoder of the input from the last conv stage; I(X;F) in nats"
    fixed_keys = frozenset({"penalty", "n_fit", "converged", "seeds", "threads"})

    def __init__(self, settings: RidgeSettings | None = None) -> None:
        self.settings = settings or RidgeSettings()

    @classmethod
    def from_config(cls, sc) -> RidgeEstimator:
        r = sc.ridge
        return cls(
            RidgeSettings(
                train_samples=int(r.train_samples),
                holdout_fraction=float(r.holdout_fraction),
                penalties=tuple(float(p) for p in r.penalties),
                seed=int(sc.seed),
                seeds=int(r.seeds),
            )
        )

    def params(self) -> dict:
        s = self.settings
        return {
            "train_samples": s.train_samples,
            "holdout_fraction": s.holdout_fraction,
            "penalties": list(s.penalties),
            "seed": s.seed,
            "seeds": s.seeds,
        }

    def estimate(
        self,
        features: Sequence[CheckpointFeatures],
        data: ScoringData,
        conv: ConvSource | None = None,
        device: torch.device | str = "cpu",
    ) -> list[Estimate]:
        """``conv`` covers ``data.train_x`` rows first, then the scoring sample's (the runner's layout)."""
        check_conv_inputs("ridge", features, data, conv, min_rows=4)
        if not self.settings.penalties:
            raise ScoringError("scoring.ridge.penalties is empty")
        m, n, s = len(data.train_x), len(data), self.settings
        splits = [split_rows(m, s, r) for r in range(s.seeds)]
        eval_rows = torch.arange(m, m + n)
        y = standardized_targets(torch.cat([data.train_x.cpu(), data.x.cpu()]), torch.arange(m))
        folds = torch.zeros(n, dtype=torch.long) if data.folds is None else data.folds.long().cpu()
        n_folds = int(folds.max()) + 1
        moments = fold_moments(y[eval_rows], folds, n_folds)
        phi = _conv_rows(conv, m + n)
        threads = float(torch.get_num_threads())
        out = []
        for k in range(conv.num_checkpoints):
            fits = [fit_decoder(phi[k], y, fit, hold, eval_rows, s.penalties) for fit, hold in splits]
            sums = [
                torch.zeros(n_folds, y.shape[1], dtype=torch.float64).index_add_(0, folds, f.residual.pow(2))
                for f in fits
            ]
            est = _estimate(sums, moments, n_folds)
            est.values.update(
                penalty=sum(f.penalty for f in fits) / len(fits),
                n_fit=float(len(splits[0][0])),
                converged=1.0,
                seeds=float(len(fits)),
                threads=threads,
            )
            out.append(est)
        return out


def _estimate(sums: list[Tensor], moments: tuple[Tensor, Tensor, Tensor], n_folds: int) -> Estimate:
    """Values averaged over the decoders and their ``[seeds][F]`` jackknife replicates, from each
    decoder's per-fold squared-error sums."""
    everything = torch.ones(n_folds, dtype=torch.bool)

    def stats(se: Tensor, keep: Tensor) -> dict[str, float]:
        v = coordinate_stats(se, *moments, keep)
        return {"i_x": v["i_x"], "mse": v["mse"], "neg_mse": -v["mse"]}

    per_seed = [stats(se, everything) for se in sums]
    values = {key: sum(p[key] for p in per_seed) / len(per_seed) for key in per_seed[0]}
    reps: dict[str, list[list[float]]] = {key: [] for key in values}
    for se, full in zip(sums, per_seed):
        if n_folds < 2:
            for key in reps:
                reps[key].append([full[key]])
            continue
        left = [stats(se, everything != (torch.arange(n_folds) == f)) for f in range(n_folds)]
        for key, r in jackknife_replicates(full, left, list(full)).items():
            reps[key].append(r)
    return Estimate(values, reps)
