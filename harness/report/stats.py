"""Statistics for the report: clustered paired comparisons, equivalence, Holm, power.

**The unit of replication is the teacher trajectory.** Two teacher choices are compared on
runs matched by (student seed, teacher trajectory). Students that learned from one trajectory
share its effect, so they are not independent samples of the comparison: the trajectory is the
cluster (DESIGN.md section 8). ``clustered_test`` takes the paired differences grouped by
trajectory, averages them per trajectory, and tests the ``n`` trajectory means (the effective n;
more student seeds per trajectory shrink only the student part of each mean's noise):

- ``diff_mean`` (mean of the trajectory means) with a 95% Student-t interval on ``n - 1``
  degrees of freedom (``scipy.stats.ttest_1samp``), the two-sided p of the same t-test, and
  wins / ties / losses over trajectories. With equally many students per trajectory this is
  exact under the hierarchical normal model (trajectory effect + student noise) whatever the
  ratio of the two variances; the seeded simulations in ``tests/test_verdict_simulation.py``
  check the type-I error and the power. (An exact sign-flip test on 5 trajectory means could
  never go below p = 0.0625.)
- TOST equivalence at ``±margin`` (two one-sided t-tests on the same means; p = the larger).
- the variance components: ``diff_sd_within`` (student-level sd of the differences inside a
  trajectory, pooled) and ``diff_sd_between`` (trajectory-level sd), for the power statements.

Answers (``answer``), on Holm-corrected p-values within one table's family: **better** /
**worse** (the difference test rejects), **equivalent** within ±margin (TOST rejects), else
**undecided**, with about how many trajectories would decide it (``trajectories_to_decide``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

TIE_TOL = 1e-12
BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
ANSWERS = (BETTER, WORSE, EQUIVALENT, UNDECIDED)
MARGIN = 0.005  # report.equivalence_margin's default: 0.5 pp (accuracies are fractions)
MAX_TRAJECTORIES = 10_000  # "about N more trajectories": beyond this, "more than N"
POWER = 0.8


@dataclass(frozen=True)
class ClusteredTest:
    """One paired comparison, trajectories as clusters (differences ``a - b``, unit of the inputs)."""

    n: int  # trajectories: the effective n
    students: int  # matched student pairs in all
    per_cluster_min: int  # fewest / most matched students of one trajectory
    per_cluster_max: int
    diff_mean: float  # mean over trajectories of the per-trajectory mean difference
    diff_ci_low: float
    diff_ci_high: float
    diff_sd: float | None  # sd of the per-trajectory mean differences
    diff_sd_between: float | None  # trajectory-level sd (None: not estimable)
    diff_sd_within: float | None  # student-level sd inside a trajectory (None: one student each)
    wins: int  # trajectories whose mean difference is > 0 / == 0 / < 0
    ties: int
    losses: int
    p_value: float  # two-sided t-test of the trajectory means
    p_tost: float  # TOST p at ±margin
    margin: float
    test: str

    def as_dict(self) -> dict:
        return asdict(self)


def t_pvalue(means: np.ndarray, mu: float, alternative: str) -> float:
    """p of a one-sample t-test of ``means`` against ``mu``. Trajectory means without any spread
    prove nothing (two trajectories that differ by the same one test example would otherwise be
    "significant"): NaN, except that all-zero differences are no difference (p = 1) and lie
    inside any margin (TOST p = 0)."""
    from scipy import stats

    if np.std(means, ddof=1) <= TIE_TOL:
        if np.all(np.abs(means) <= TIE_TOL):
            return 1.0 if alternative == "two-sided" else 0.0
        return math.nan
    return float(stats.ttest_1samp(means, mu, alternative=alternative).pvalue)


def variance_components(groups: Sequence[np.ndarray]) -> tuple[float | None, float | None]:
    """(sd_between, sd_within) of clustered values by the method of moments: within = pooled
    sd inside the clusters (None when no cluster has two values); between = the sd of the
    cluster means less the within part each mean carries (clipped at 0; None for < 2 clusters)."""
    dof = sum(len(g) - 1 for g in groups)
    within = math.sqrt(sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / dof) if dof > 0 else None
    if len(groups) < 2:
        return None, within
    var_means = float(np.var([g.mean() for g in groups], ddof=1))
    share = (within or 0.0) ** 2 * float(np.mean([1.0 / len(g) for g in groups]))
    return math.sqrt(max(0.0, var_means - share)), within


def clustered_test(
    diffs: Mapping[Hashable, Sequence[float]], margin: float = MARGIN, confidence: float = 0.95
) -> ClusteredTest:
    """Test paired differences grouped by trajectory (``{trajectory: [student differences]}``)."""
    from scipy import stats

    groups = [np.asarray(v, dtype=float) for _, v in sorted(diffs.items(), key=lambda kv: str(kv[0])) if len(v)]
    if not groups:
        raise ValueError("clustered_test needs at least one trajectory with a matched pair")
    means = np.array([g.mean() for g in groups])
    n, sizes = len(means), [len(g) for g in groups]
    sd_between, sd_within = variance_components(groups)
    if n < 2:
        low = high = p = p_tost = math.nan
        sd = None
    else:
        sd = float(np.std(means, ddof=1))
        if sd <= TIE_TOL:  # no spread: a point at 0 when nothing differs, else no interval (``t_pvalue``)
            low = high = 0.0 if np.all(np.abs(means) <= TIE_TOL) else math.nan
        else:
            ci = stats.ttest_1samp(means, 0.0).confidence_interval(confidence)
            low, high = float(ci.low), float(ci.high)
        p = t_pvalue(means, 0.0, "two-sided")
        p_tost = max(t_pvalue(means, -margin, "greater"), t_pvalue(means, margin, "less"))
    return ClusteredTest(
        n=n,
        students=sum(sizes),
        per_cluster_min=min(sizes),
        per_cluster_max=max(sizes),
        diff_mean=float(means.mean()),
        diff_ci_low=low,
        diff_ci_high=high,
        diff_sd=sd,
        diff_sd_between=sd_between,
        diff_sd_within=sd_within,
        wins=int(np.sum(means > TIE_TOL)),
        ties=int(np.sum(np.abs(means) <= TIE_TOL)),
        losses=int(np.sum(means < -TIE_TOL)),
        p_value=p,
        p_tost=p_tost,
        margin=margin,
        test=describe_test(n, min(sizes), max(sizes)),
    )


def describe_test(n: int, fewest: int, most: int) -> str:
    """The test, in words, with its effective n."""
    per = str(fewest) if fewest == most else f"{fewest}-{most}"
    return f"t-test of {n} trajectory means ({per} student(s) each; df {max(n - 1, 0)})"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-corrected p-values (same order); NaN entries stay NaN and do not count. (numpy:
    statsmodels' ``multipletests`` gives the same numbers, tested, but runs ``gc.collect()`` on
    every call, 0.2 s each, most of a report's time.)"""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        steps = p[order] * (len(ok) - np.arange(len(ok)))
        out[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return [float(x) for x in out]


def answer(diff_mean: float, p_holm: float, p_tost_holm: float, alpha: float = 0.05) -> str:
    """better / worse / equivalent / undecided, on Holm-corrected p-values: a significant
    difference first, else equivalence within the margin, else undecided."""
    if not math.isnan(p_holm) and p_holm < alpha and abs(diff_mean) > TIE_TOL:
        return BETTER if diff_mean > 0 else WORSE
    if not math.isnan(p_tost_holm) and p_tost_holm < alpha:
        return EQUIVALENT
    return UNDECIDED


def answer_text(kind: str, margin: float, more: int | None, n: int, within: bool = False) -> str:
    """The answer in words: ``equivalent within ±0.50 pp``, ``undecided: about 7 more trajectories
    would decide it``; ``better, by less than ±0.50 pp`` when the difference is significant and
    also inside the margin (``within``: the TOST rejects too)."""
    if kind == EQUIVALENT:
        return f"equivalent within ±{100 * margin:.2f} pp"
    if kind != UNDECIDED:
        return f"{kind}, by less than ±{100 * margin:.2f} pp" if within else kind
    if n < 2:
        return "undecided: needs at least 2 trajectories"
    if more is None:
        return "undecided"
    if more > MAX_TRAJECTORIES:
        return f"undecided: more than {MAX_TRAJECTORIES} more trajectories"
    return f"undecided: about {more} more trajector{'y' if more == 1 else 'ies'} would decide it"


# ---------------------------------------------------------------------------------------------
# power, in trajectories


def cluster_sd(sd_between: float | None, sd_within: float | None, students: int) -> float | None:
    """The sd of one trajectory's mean difference with ``students`` per trajectory."""
    if sd_between is None and sd_within is None:
        return None
    return math.sqrt((sd_between or 0.0) ** 2 + (sd_within or 0.0) ** 2 / max(students, 1))


def min_detectable_effect(sd: float | None, n: int, alpha: float = 0.05, power: float = POWER) -> float | None:
    """Smallest true mean difference (unit of ``sd``, the sd of the trajectory means) a
    two-sided t-test at ``alpha`` detects with probability ``power`` from ``n`` trajectories."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or sd is None or not sd > 0:
        return None
    dz = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(dz) * sd


def power_of_test(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided t-test of ``n`` trajectory means (sd ``sd``) for a true ``effect``
    (noncentral t; its normal limit where scipy's noncentral t returns NaN for a huge effect)."""
    from scipy import stats

    if n < 2 or not sd > 0:
        return 0.0
    df, nc = n - 1, abs(effect) / sd * math.sqrt(n)
    tc = stats.t.ppf(1 - alpha / 2, df)
    p = stats.nct.sf(tc, df, nc) + stats.nct.cdf(-tc, df, nc)
    return float(p if math.isfinite(p) else stats.norm.sf(tc - nc) + stats.norm.cdf(-tc - nc))


def tost_power(theta: float, sd: float, n: int, margin: float, alpha: float = 0.05) -> float:
    """Power of TOST at ±``margin`` with ``n`` trajectory means (sd ``sd``) when the true
    difference is ``theta``: both one-sided t-tests reject (noncentral t; the standard lower
    bound P(A) + P(B) - 1, tight when the margin is several standard errors wide)."""
    from scipy import stats

    if n < 2 or not sd > 0 or abs(theta) >= margin:
        return 0.0
    df, se = n - 1, sd / math.sqrt(n)
    tc = stats.t.ppf(1 - alpha, df)
    lower = stats.nct.sf(tc, df, (theta + margin) / se)
    upper = stats.nct.cdf(-tc, df, (theta - margin) / se)
    if not math.isfinite(lower + upper):  # scipy's noncentral t fails far in the tail: normal limit
        lower, upper = stats.norm.sf(tc - (theta + margin) / se), stats.norm.cdf(-tc - (theta - margin) / se)
    return float(max(0.0, lower + upper - 1.0))


def _smallest_n(ok: Callable[[int], bool], n_max: int = MAX_TRAJECTORIES) -> int | None:
    """The smallest n in [2, n_max] with ``ok(n)`` (monotone in n): doubling, then bisection."""
    hi = 2
    while not ok(hi):
        if hi >= n_max:
            return None
        hi = min(2 * hi, n_max)
    lo = max(2, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return lo


def trajectories_to_decide(
    diff: float, sd: float | None, margin: float, alpha: float = 0.05, power: float = POWER
) -> int | None:
    """About how many trajectories (in all) decide a comparison with probability ``power`` if
    the true difference is the observed ``diff`` and the trajectory means spread by ``sd``: the
    fewer of what the difference test and the equivalence test need; None when neither can."""
    if sd is None or not sd > 0 or math.isnan(diff):
        return None
    needs = []
    if abs(diff) > TIE_TOL:
        needs.append(_smallest_n(lambda k: power_of_test(diff, sd, k, alpha) >= power))
    if abs(diff) < margin:
        needs.append(_smallest_n(lambda k: tost_power(diff, sd, k, margin, alpha) >= power))
    found = [k for k in needs if k is not None]
    return min(found) if found else MAX_TRAJECTORIES + 1


def trajectories_needed(
    effect: float, sd_between: float | None, sd_within: float | None, students: int, alpha: float = 0.05
) -> int | None:
    """Trajectories a true difference ``effect`` needs for 80% power with ``students`` students
    per trajectory (the t-test of trajectory means); None when the spread is unknown."""
    sd = cluster_sd(sd_between, sd_within, students)
    if sd is None or not sd > 0 or not effect > 0:
        return None
    return _smallest_n(lambda k: power_of_test(effect, sd, k, alpha) >= POWER)


# ---------------------------------------------------------------------------------------------
# one-sample summaries


def _t_interval(d: np.ndarray, confidence: float) -> tuple[float, float]:
    """(low, high) Student-t interval; NaN with fewer than two values, a point when sd is 0."""
    from scipy import stats

    if len(d) < 2:
        return math.nan, math.nan
    if float(np.std(d, ddof=1)) <= TIE_TOL:
        return float(d.mean()), float(d.mean())
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def mean_interval(xs: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a sample with a Student-t interval; NaN bounds for n < 2."""
    x = np.asarray([v for v in xs if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    low, high = _t_interval(x, confidence)
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
