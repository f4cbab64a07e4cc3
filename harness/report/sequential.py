"""Group-sequential answers for sweeps that look after every round (issue 24).

A comparison is looked at after each round; looking repeatedly at a fixed-level test inflates
its error rates, so each look uses a smaller *nominal* level from a Lan-DeMets alpha-spending
function (O'Brien-Fleming-type or Pocock-type) at the look's information fraction. The
boundaries come from the Jennison-Turnbull recursive integration of ``gsdesign`` (the port of
gsDesign's ``h1``/``hupdate``): under theta = 0, the probability of first crossing at look k is
what the spending function allots to it. Two tests run side by side on the same looks:

- the difference test, two-sided and symmetric (total ``alpha``): ``better`` / ``worse``;
- each half of TOST at ±margin, one-sided (total ``alpha`` each); a half that has rejected
  stays rejected, and ``equivalent`` is answered once both have.

Variances are unknown, so each look uses the *significance level approach* (Jennison &
Turnbull 2000, ch. 11): the Student-t p-values of the n trajectory means (as in
``stats.clustered_test``) are compared with the look's nominal levels. With few trajectories that
approximation overshoots alpha a little (2-8% of alpha in 100,000-replicate simulations of
designs from 2 trajectories up, the known-variance version is exact), so the boundaries spend
``SPEND_SHARE`` of alpha (90% with O'Brien-Fleming-type spending, 80% with Pocock-type, whose
early looks at few trajectories get more of it): the seeded simulations in ``tests/test_sequential.py`` (engine:
``sequential_sim``) check that the type-I and equivalence error then stay at most alpha.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from harness.report.stats import (
    BETTER,
    EQUIVALENT,
    MAX_TRAJECTORIES,
    TIE_TOL,
    UNDECIDED,
    WORSE,
    cluster_sd,
    t_pvalue,
    trajectories_to_decide,
    variance_components,
)

SPENDING = ("obf", "pocock")  # Lan-DeMets O'Brien-Fleming-type and Pocock-type spending functions
GRID_R = 18  # gsDesign's default grid size for the recursive integration
# of alpha the t-test looks spend, per spending function: the significance-level approach's small excess (module doc)
SPEND_SHARE = {"obf": 0.9, "pocock": 0.8}
_Z_MAX = 12.0  # inside gsdesign's grid (about ±14.6 at r = 18): P(Z > 12) is about 2e-33


def spent(t: float, alpha: float, kind: str = "obf") -> float:
    """Cumulative alpha spent at information fraction ``t`` (``t >= 1``: all of ``alpha``).
    OBF: ``2 - 2 Phi(z_{1-alpha/2} / sqrt t)``; Pocock: ``alpha log(1 + (e - 1) t)``."""
    from scipy import stats

    if kind not in SPENDING:
        raise ValueError(f"spending function {kind!r}: expected one of {SPENDING}")
    if not t > 0:
        raise ValueError(f"information fraction must be > 0, got {t}")
    if t >= 1:
        return alpha
    if kind == "obf":
        return float(2.0 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(t)))
    return float(alpha * math.log(1.0 + (math.e - 1.0) * t))


@dataclass(frozen=True)
class Bounds:
    """The critical values of one look."""

    fraction: float  # information fraction of this look
    z_diff: float  # two-sided critical |Z| of the difference test (total alpha two-sided)
    z_equiv: float  # one-sided critical Z of each TOST half (total alpha each)
    nominal_diff: float  # = 2 (1 - Phi(z_diff)): the nominal two-sided p-level at this look
    nominal_equiv: float  # = 1 - Phi(z_equiv)


def _crossing_bounds(fractions: Sequence[float], alpha: float, kind: str, two_sided: bool) -> list[float]:
    """Critical Z of each look such that P(first crossing of the upper boundary at look k |
    theta = 0) is the alpha one side spends between looks k-1 and k; ``two_sided``: symmetric
    boundaries, each side spending ``spent(t, alpha / 2)`` (gsDesign's convention for a
    symmetric two-sided design), so ``alpha`` in all."""
    from gsdesign import h1, hupdate
    from scipy import optimize, stats

    side_alpha = alpha / 2 if two_sided else alpha  # symmetric: each side spends spent(t, alpha / 2)
    out: list[float] = []
    grid = None  # (z, w, h): sub-density of Z_{k-1} on the continuation region
    prev_t, prev_spent = 0.0, 0.0
    for t in fractions:
        increment = spent(t, side_alpha, kind) - prev_spent
        increment = 0.0 if increment <= 1e-12 * side_alpha else increment  # rounding once all is spent
        if grid is None:
            z = float(stats.norm.isf(increment)) if increment > 0 else math.inf
        else:

            def excess(b: float, t: float = t, t0: float = prev_t, grid: tuple = grid, inc: float = increment) -> float:
                upper = hupdate(GRID_R, 0.0, t, b, math.inf, 0.0, t0, grid)[2].sum()
                return float(upper) - inc

            z = math.inf if increment <= 0 or excess(_Z_MAX) >= 0 else optimize.brentq(excess, 0.0, _Z_MAX, xtol=1e-10)
        out.append(float(z))
        low = -z if two_sided else -math.inf
        grid = h1(GRID_R, 0.0, t, low, z) if grid is None else hupdate(GRID_R, 0.0, t, low, z, 0.0, prev_t, grid)
        prev_t, prev_spent = t, prev_spent + increment
    return out


def boundaries(fractions: Sequence[float], alpha: float, kind: str = "obf", share: float | None = None) -> list[Bounds]:
    """Lan-DeMets boundaries for looks at these increasing information fractions (a fraction
    >= 1 spends all that is left): two-sided symmetric for the difference, one-sided for each
    TOST half, spending ``share`` x ``alpha`` (default ``SPEND_SHARE[kind]``; 1: the textbook
    boundaries). Earlier looks' boundaries never change when a look is added."""
    from scipy import stats

    ts = [float(t) for t in fractions]
    if not ts or ts[0] <= 0 or any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"fractions must be strictly increasing and > 0, got {list(fractions)}")
    share = SPEND_SHARE.get(kind, 1.0) if share is None else share
    diff = _crossing_bounds(ts, share * alpha, kind, two_sided=True)
    equiv = _crossing_bounds(ts, share * alpha, kind, two_sided=False)
    return [Bounds(t, d, e, float(2.0 * stats.norm.sf(d)), float(stats.norm.sf(e))) for t, d, e in zip(ts, diff, equiv)]


@dataclass(frozen=True)
class LookResult:
    """One comparison at one look (the unit of the differences ``a - b``)."""

    n: int  # trajectories
    m: int  # students per trajectory (the fewest, should they differ)
    students: int
    diff_mean: float
    se: float
    ci_low: float  # repeated confidence interval at the look's nominal level
    ci_high: float
    p_value: float  # two-sided t-test of the trajectory means (df n - 1)
    p_lower: float  # TOST halves: H0 theta <= -margin ...
    p_upper: float  # ... and H0 theta >= margin
    fraction: float
    nominal_diff: float
    nominal_equiv: float
    rejects_diff: bool  # at this look: p < nominal
    rejects_lower: bool
    rejects_upper: bool
    sd_between: float | None
    sd_within: float | None
    margin: float

    def as_dict(self) -> dict:
        return asdict(self)


def _rejects(p: float, level: float) -> bool:
    return not math.isnan(p) and p < level


def look(diffs: Mapping[Hashable, Sequence[float]], bounds: Bounds, margin: float) -> LookResult:
    """Test one comparison at one look: the t-test p-values of the n trajectory means against
    the look's nominal levels (n < 2: nothing rejects, NaN interval; spread 0 as ``stats.t_pvalue``)."""
    from scipy import stats

    groups = [np.asarray(v, dtype=float) for _, v in sorted(diffs.items(), key=lambda kv: str(kv[0])) if len(v)]
    if not groups:
        raise ValueError("look needs at least one trajectory with a matched pair")
    means = np.array([g.mean() for g in groups])
    n, mean = len(means), float(means.mean())
    sd_between, sd_within = variance_components(groups)
    se = p = p_lower = p_upper = low = high = math.nan
    if n >= 2:
        se = float(np.std(means, ddof=1)) / math.sqrt(n)
        p = t_pvalue(means, 0.0, "two-sided")
        p_lower, p_upper = t_pvalue(means, -margin, "greater"), t_pvalue(means, margin, "less")
        if se <= TIE_TOL:  # no spread: a point at 0 when nothing differs, else no interval
            low = high = 0.0 if np.all(np.abs(means) <= TIE_TOL) else math.nan
        else:
            half = float(stats.t.isf(bounds.nominal_diff / 2, n - 1)) * se
            low, high = mean - half, mean + half
    return LookResult(
        n=n,
        m=min(len(g) for g in groups),
        students=sum(len(g) for g in groups),
        diff_mean=mean,
        se=se,
        ci_low=low,
        ci_high=high,
        p_value=p,
        p_lower=p_lower,
        p_upper=p_upper,
        fraction=bounds.fraction,
        nominal_diff=bounds.nominal_diff,
        nominal_equiv=bounds.nominal_equiv,
        rejects_diff=_rejects(p, bounds.nominal_diff),
        rejects_lower=_rejects(p_lower, bounds.nominal_equiv),
        rejects_upper=_rejects(p_upper, bounds.nominal_equiv),
        sd_between=sd_between,
        sd_within=sd_within,
        margin=margin,
    )


def decide(looks: Sequence[LookResult]) -> tuple[str, int | None]:
    """(answer, index of the deciding look): the first look whose difference test rejects
    answers better/worse by its sign; else equivalent at the first look by which both TOST
    halves have rejected (each sticky); else (undecided, None). Later looks change nothing."""
    lower = upper = False
    for i, r in enumerate(looks):
        if r.rejects_diff and abs(r.diff_mean) > TIE_TOL:
            return (BETTER if r.diff_mean > 0 else WORSE), i
        lower, upper = lower or r.rejects_lower, upper or r.rejects_upper
        if lower and upper:
            return EQUIVALENT, i
    return UNDECIDED, None


def right_answers(theta: float, margin: float) -> set[str]:
    """The answers that are true of a difference ``theta``: its sign (any nonzero difference), and
    equivalent when it lies inside the margin (``decide`` answers a significant difference first)."""
    out = {BETTER if theta > 0 else WORSE} if theta != 0 else set()
    return out | ({EQUIVALENT} if abs(theta) < margin else set())


def information(sd_between: float | None, sd_within: float | None, n: int, m: int) -> float | None:
    """``n / (sd_b^2 + sd_w^2 / m)``: the information of the mean of n trajectory means
    (None when both sds are unknown or the variance is 0)."""
    sd = cluster_sd(sd_between, sd_within, m)
    return None if sd is None or not sd > 0 else n / sd**2


def fixed_trajectories(
    effect: float,
    sd_between: float | None,
    sd_within: float | None,
    m: int,
    margin: float,
    alpha: float,
    power: float = 0.8,
) -> int | None:
    """Trajectories a fixed design (one look at ``alpha``, m students each) needs to decide a
    true difference ``effect`` with probability ``power``: the fewer of what the difference
    t-test and TOST need (``stats.trajectories_to_decide``); None when unknown or out of reach."""
    need = trajectories_to_decide(effect, cluster_sd(sd_between, sd_within, m), margin, alpha, power)
    return None if need is None or need > MAX_TRAJECTORIES else need
