"""``kde``: noise-regularized pairwise-distance estimate of I(X;F) and I(F;Y) (nats).

Following Saxe et al. (2018) and Kolchinsky & Tracey (2017): the deterministic penultimate
features f_i (standardized, see ``entropy.standardize``: z-scored per unit, scaled to unit total
variance) get additive noise, T = F + eps with eps ~ N(0, s2 I). On the scoring sample T is a
mixture of N Gaussians N(f_i, s2 I). Its entropy has the Kolchinsky-Tracey pairwise-distance
bounds (KL divergence above, Bhattacharyya distance below); H(T|X) = d/2 log(2 pi e s2) is the
noise, the d-dependent constants cancel, and with D_ij = ||f_i - f_j||^2:

    I(X;T) <= log N - 1/N sum_i log sum_j exp(-D_ij / (2 s2))      (``i_x``, KL: upper bound)
    I(X;T) >= log N - 1/N sum_i log sum_j exp(-D_ij / (8 s2))      (``i_x_lower``, Bhattacharyya)

    I(T;Y)  ~  [KL bound of H(T)] - sum_c p_c [KL bound of H(T | Y=c)]   (``i_y``)

where the class-conditional terms use only the samples of class c. ``i_x`` is 0 when all features
coincide and log N at most (saturated: the samples are far apart compared to the noise). ``i_y``
is a difference of two upper bounds, not a bound itself; it lies in [0, H(Y)] up to sampling.

Known biases (tested in tests/test_scoring_estimators.py): for a d-dimensional Gaussian F (unit
total variance, v = 1/d per unit) sampled densely, ``i_x`` exceeds the true
I(X;T) = d/2 log(1 + v/s2) by about d/2 * v/(v + s2) (0.45 nats for d = 1, s2 = 0.1) and
``i_x_lower`` falls short of it. ``i_y`` overestimates I(T;Y) by a few hundredths of a nat when
the samples are dense compared with the noise, but when they are sparse (many effective
dimensions, few samples, small s2) it drifts towards H(Y) even for labels independent of F: on
the quickstart's 128-wide features with N = 400 and s2 = 0.1, shuffled labels still give
0.7-1.1 nats of the 2.3 of H(Y), and the floor differs between checkpoints, so it biases the
ranking. ``i_y_shuffled`` (the same estimate for labels permuted at random, averaged over
``shuffles`` fixed permutations) estimates that floor per checkpoint, and the selection term
``i_y_corrected`` = ``i_y`` - ``i_y_shuffled`` subtracts it (0 in expectation for labels
independent of F; tested). All values depend on s2, written into the scores file. Distances are computed with
torch.cdist in row blocks (O(N^2) time, O(block N) memory): a few thousand samples take well
under a second on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import CheckpointFeatures, ConvSource, Estimator, ScoringData, register_estimator
from .entropy import standardize

BLOCK_ROWS = 1024


def _mixture_terms(h: Tensor, labelings: Sequence[Tensor], noise_var: float) -> dict[str, Tensor]:
    """Per sample i: logsumexp_j of -D_ij/(2 s2) over all j ("kl"), of -D_ij/(8 s2) over all j
    ("bd"), and of -D_ij/(2 s2) over j with the same label as i, once per labeling ("class0", ...)."""
    n = h.shape[0]
    parts: dict[str, list[Tensor]] = {"kl": [], "bd": [], **{f"class{k}": [] for k in range(len(labelings))}}
    for start in range(0, n, BLOCK_ROWS):
        d2 = torch.cdist(h[start : start + BLOCK_ROWS], h).pow(2).clamp_min(0)
        a = -d2 / (2.0 * noise_var)
        parts["kl"].append(torch.logsumexp(a, dim=1))
        parts["bd"].append(torch.logsumexp(a / 4.0, dim=1))
        for k, y in enumerate(labelings):
            same = y[start : start + BLOCK_ROWS, None] == y[None, :]
            parts[f"class{k}"].append(torch.logsumexp(a.masked_fill(~same, -math.inf), dim=1))
    return {k: torch.cat(v) for k, v in parts.items()}


def _conditional(lse_class: Tensor, y: Tensor) -> float:
    """sum_c p_c [log N_c - mean_{i in c} lse_class_i]: the KL bound of H(T|Y) minus H(T|X)."""
    n = y.shape[0]
    cond = 0.0
    for c in torch.unique(y):
        members = y == c
        n_c = int(members.sum())
        cond += (n_c / n) * (math.log(n_c) - float(lse_class[members].mean()))
    return cond


def kde_mutual_information(
    features: Tensor, labels: Tensor | None, noise_var: float, standardized: bool = True, shuffles: int = 1
) -> dict[str, float]:
    """``{"i_x", "i_x_lower", "i_y", "i_y_shuffled", "i_y_corrected"}`` in nats (module doc); no
    ``i_y*`` without labels.

    ``features`` [N, D]. With ``standardized`` the features are z-scored per unit and scaled to
    unit total variance first. ``i_y_shuffled`` is ``i_y`` for randomly permuted labels, averaged
    over ``shuffles`` fixed permutations: the estimator's bias floor at this N, D and s2 (true
    value 0); ``i_y_corrected`` = ``i_y`` - ``i_y_shuffled``.
    """
    if noise_var <= 0:
        raise ValueError(f"noise_var must be positive, got {noise_var}")
    if shuffles < 1:
        raise ValueError(f"shuffles must be >= 1, got {shuffles}")
    h = features.reshape(features.shape[0], -1)
    h = standardize(h) if standardized else h.double()
    n = h.shape[0]
    labelings: list[Tensor] = []
    if labels is not None:
        y = labels.long().to(h.device)
        gen = torch.Generator().manual_seed(0)
        labelings = [y] + [y[torch.randperm(n, generator=gen).to(h.device)] for _ in range(shuffles)]
    lse = _mixture_terms(h, labelings, noise_var)
    i_x = math.log(n) - float(lse["kl"].mean())
    out = {"i_x": i_x, "i_x_lower": math.log(n) - float(lse["bd"].mean())}
    if labelings:
        out["i_y"] = i_x - _conditional(lse["class0"], labelings[0])
        floors = [i_x - _conditional(lse[f"class{k}"], labelings[k]) for k in range(1, len(labelings))]
        out["i_y_shuffled"] = sum(floors) / len(floors)
        out["i_y_corrected"] = out["i_y"] - out["i_y_shuffled"]
    return out


@register_estimator("kde")
class KDEEstimator(Estimator):
    """Keys (nats): ``i_x`` / ``i_x_lower`` (bounds on I(X;T)), ``i_y`` (raw estimate of I(T;Y)),
    ``i_y_shuffled`` (``i_y`` with permuted labels: the bias floor), ``i_y_corrected`` (``i_y``
    minus its floor: the selection term and plane value)."""

    x_key = "i_x"
    y_key = "i_y_corrected"
    description = "Kolchinsky-Tracey pairwise-distance bound, Gaussian noise on standardized penultimate features"
    fixed_keys = frozenset({"noise_var"})

    def __init__(self, noise_var: float = 0.1, shuffles: int = 5) -> None:
        if noise_var <= 0:
            raise ValueError(f"kde noise_var must be positive, got {noise_var}")
        if shuffles < 1:
            raise ValueError(f"kde shuffles must be >= 1, got {shuffles}")
        self.noise_var = float(noise_var)
        self.shuffles = int(shuffles)

    @classmethod
    def from_config(cls, sc) -> KDEEstimator:
        return cls(noise_var=sc.kde_noise_var, shuffles=sc.kde_shuffles)

    def params(self) -> dict:
        return {"noise_var": self.noise_var, "standardize": "zscore/sqrt(D)", "shuffles": self.shuffles}

    def score(
        self,
        features: Sequence[CheckpointFeatures],
        data: ScoringData,
        conv: ConvSource | None = None,
        device: torch.device | str = "cpu",
    ) -> list[dict[str, float]]:
        y = data.y.to(device)
        out = []
        for f in features:
            res = kde_mutual_information(f.penultimate.to(device), y, self.noise_var, shuffles=self.shuffles)
            out.append({**res, "noise_var": self.noise_var})
        return out
