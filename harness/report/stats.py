"""Paired statistics for the report: differences, intervals, permutation p-values, Holm, power.

Two teacher choices are compared on runs matched by (student seed, teacher trajectory), so the
student's seed noise and the teacher run's noise cancel in each difference. For ``n`` matched
pairs with differences ``d``:

- ``diff_mean`` with a 95% Student-t interval (``scipy.stats.ttest_1samp(...).confidence_interval``);
- wins / ties / losses (``d > 0`` / ``d == 0`` / ``d < 0``);
- a two-sided p-value from the paired (sign-flip) permutation test
  (``scipy.stats.permutation_test``, ``permutation_type="samples"``): exact over all ``2**n`` sign
  patterns for ``n <= EXACT_MAX_N``, Monte-Carlo with ``RESAMPLES`` seeded resamples above. The
  exact test's smallest possible p is ``2 / 2**n``: with 3 pairs it is 0.25, so nothing can be
  "better" or "worse" at 0.05 with fewer than 6 pairs;
- Holm's step-down correction across the rows of one table (``statsmodels`` ``multipletests``);
- a verdict on the corrected p: better / worse / no detectable difference.

Power (``statsmodels`` ``TTestPower``, the paired t-test as the approximation): the minimum
detectable effect at 80% power for an observed spread of differences and ``n``, and the number of
pairs a given effect needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

EXACT_MAX_N = 16  # 2**16 = 65,536 sign patterns: exact and still fast
RESAMPLES = 20_000  # Monte-Carlo sign flips above EXACT_MAX_N (seeded: same answer every time)
TIE_TOL = 1e-12
BETTER, WORSE, NO_DIFF = "better", "worse", "no detectable difference"


@dataclass(frozen=True)
class PairedTest:
    """One paired comparison (differences in the unit of the inputs: ``a - b``)."""

    n: int
    diff_mean: float
    diff_ci_low: float
    diff_ci_high: float
    diff_sd: float | None
    wins: int
    ties: int
    losses: int
    p_value: float
    test: str

    def as_dict(self) -> dict:
        return asdict(self)


def describe_test(n: int) -> str:
    """The test used for ``n`` pairs, in words."""
    if n <= EXACT_MAX_N:
        return f"exact paired permutation test (all 2^{n} = {2**n} sign flips)"
    return f"paired permutation test ({RESAMPLES} random sign flips, seed 0)"


def min_exact_p(n: int) -> float:
    """The smallest two-sided p the exact sign-flip test can give with ``n`` pairs."""
    return min(1.0, 2.0 / 2**n)


def _permutation_p(d: np.ndarray) -> float:
    from scipy import stats

    if len(d) < 2 or np.all(np.abs(d) <= TIE_TOL):  # one pair: both sign flips are as extreme
        return 1.0
    res = stats.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        vectorized=True,
        alternative="two-sided",
        n_resamples=np.inf if len(d) <= EXACT_MAX_N else RESAMPLES,
        random_state=0,
    )
    return float(min(1.0, res.pvalue))


def _t_interval(d: np.ndarray, confidence: float) -> tuple[float, float, float | None]:
    """(low, high, sample sd); NaN bounds with fewer than two pairs, a point when sd is 0."""
    from scipy import stats

    if len(d) < 2:
        return math.nan, math.nan, None
    sd = float(np.std(d, ddof=1))
    if sd <= TIE_TOL:
        return float(d.mean()), float(d.mean()), 0.0
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence)
    return float(ci.low), float(ci.high), sd


def paired_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedTest:
    """Compare matched samples ``a`` and ``b`` (same order): differences ``a - b``."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError("paired_test needs two equally long, non-empty sequences")
    low, high, sd = _t_interval(d, confidence)
    return PairedTest(
        n=len(d),
        diff_mean=float(d.mean()),
        diff_ci_low=low,
        diff_ci_high=high,
        diff_sd=sd,
        wins=int(np.sum(d > TIE_TOL)),
        ties=int(np.sum(np.abs(d) <= TIE_TOL)),
        losses=int(np.sum(d < -TIE_TOL)),
        p_value=_permutation_p(d),
        test=describe_test(len(d)),
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-corrected p-values (same order); NaN entries stay NaN and do not count."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return [float(x) for x in out]


def verdict(diff_mean: float, p: float, alpha: float = 0.05) -> str:
    """better / worse / no detectable difference, on a (corrected) p-value."""
    if math.isnan(p) or p >= alpha or abs(diff_mean) <= TIE_TOL:
        return NO_DIFF
    return BETTER if diff_mean > 0 else WORSE


def min_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Smallest true mean difference (unit of ``sd``) detected with probability ``power`` by a
    two-sided paired t-test at ``alpha`` with ``n`` pairs; None for n < 2 or sd unknown."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or sd is None or not sd > 0:
        return None
    dz = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(dz) * sd


def pairs_needed(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Pairs (student seeds) a true difference ``effect`` needs for ``power`` at ``alpha``
    (two-sided paired t-test); never fewer than the exact test's floor (6 pairs at 0.05)."""
    from statsmodels.stats.power import TTestPower

    if sd is None or not sd > 0 or not effect > 0:
        return None
    n = TTestPower().solve_power(effect_size=effect / sd, nobs=None, alpha=alpha, power=power, alternative="two-sided")
    floor = next(k for k in range(1, 64) if min_exact_p(k) < alpha)
    return max(int(math.ceil(float(n))), floor)


def mean_interval(xs: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a sample with a Student-t interval; NaN bounds for n < 2."""
    x = np.asarray([v for v in xs if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    low, high, _ = _t_interval(x, confidence)
    return float(x.mean()), low, high


def proportion_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """(k / n, low, high) with the exact Clopper-Pearson interval (``scipy.stats.binomtest``)."""
    from scipy import stats

    if n == 0:
        return math.nan, math.nan, math.nan
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return k / n, float(ci.low), float(ci.high)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (``scipy.stats.spearmanr``); NaN when either side is constant."""
    from scipy import stats

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)
