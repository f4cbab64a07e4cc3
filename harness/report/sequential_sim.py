"""Seeded, vectorized simulation of a whole adaptive design under the hierarchical model.

Per repetition, the data of the last look are drawn once (trajectory effects ``b_t`` for the
most trajectories, student noise ``e_tj`` for the most trajectories x students) and every look
takes the nested subset of its (n, m), so looks are nested as in a real sweep. Each look's
t-tests of the trajectory means are computed for all repetitions at once with numpy and
compared with the look's nominal levels exactly as ``sequential.look`` / ``decide`` do (the
tests check that the p-values agree). Used by ``tests/test_sequential.py`` and benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.report.sequential import Bounds, boundaries, information, right_answers
from harness.report.stats import ANSWERS, BETTER, EQUIVALENT, UNDECIDED, WORSE


@dataclass(frozen=True)
class SimResult:
    """What a design did over ``reps`` simulated comparisons."""

    reps: int
    decided: dict[str, float]  # share of reps ending better / worse / equivalent / undecided
    mean_trajectories: float  # at the stop (the last look for undecided reps)
    mean_students: float
    mean_cost: float
    power: float  # share giving a true answer (``sequential.right_answers``)


def default_cost(n: int, m: int) -> float:
    """Compute of a look with n trajectories of m students: one teacher + m students each."""
    return n * (1.0 + m)


def trajectory_means(
    theta: float, sd_between: float, sd_within: float, schedule: Sequence[tuple[int, int]], reps: int, seed: int
) -> list[np.ndarray]:
    """Per look, the (reps, n) trajectory means of nested data drawn once per rep."""
    _check_schedule(schedule)
    n_max, m_max = schedule[-1]
    rng = np.random.default_rng(seed)
    b = rng.normal(0.0, sd_between, size=(reps, n_max))
    e = rng.normal(0.0, sd_within, size=(reps, n_max, m_max))
    return [theta + b[:, :n] + e[:, :n, :m].mean(axis=2) for n, m in schedule]


def t_pvalues(means: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(two-sided p, p of TOST's lower half, p of its upper half) of the one-sample t-tests of
    each row of ``means`` (as ``sequential.look``; rows without spread give NaN)."""
    from scipy import stats

    n = means.shape[1]
    if n < 2:
        nan = np.full(means.shape[0], math.nan)
        return nan, nan, nan
    se = means.std(axis=1, ddof=1) / math.sqrt(n)
    se = np.where(se > 0, se, math.nan)
    mean = means.mean(axis=1)
    df = n - 1
    p = 2.0 * stats.t.sf(np.abs(mean) / se, df)
    return p, stats.t.sf((mean + margin) / se, df), stats.t.cdf((mean - margin) / se, df)


def simulate_bounds(
    means_by_look: Sequence[np.ndarray],
    bounds: Sequence[Bounds],
    margin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(answer per rep, index of the stopping look per rep: the deciding look, else the last)
    for the nominal levels of ``bounds`` (any levels: also the naive design's)."""
    reps = means_by_look[0].shape[0]
    answer = np.full(reps, UNDECIDED, dtype=object)
    stop = np.full(reps, len(bounds) - 1)
    lower = np.zeros(reps, dtype=bool)
    upper = np.zeros(reps, dtype=bool)
    for k, (means, b) in enumerate(zip(means_by_look, bounds)):
        open_ = answer == UNDECIDED
        p, p_low, p_up = t_pvalues(means, margin)
        mean = means.mean(axis=1)
        diff = open_ & (p < b.nominal_diff) & (mean != 0)
        answer[diff] = np.where(mean[diff] > 0, BETTER, WORSE)
        lower |= p_low < b.nominal_equiv
        upper |= p_up < b.nominal_equiv
        equiv = open_ & ~diff & lower & upper
        answer[equiv] = EQUIVALENT
        stop[diff | equiv] = k
    return answer, stop


def summarize(
    answer: np.ndarray, stop: np.ndarray, schedule: Sequence[tuple[int, int]], right: set[str], cost: Callable
) -> SimResult:
    """Shares of the answers, mean size and cost at the stop, and the share answering one of ``right``."""
    ns = np.array([n for n, _ in schedule], dtype=float)[stop]
    ms = np.array([m for _, m in schedule], dtype=float)[stop]
    costs = np.array([cost(n, m) for n, m in schedule], dtype=float)[stop]
    return SimResult(
        reps=len(answer),
        decided={a: float(np.mean(answer == a)) for a in ANSWERS},
        mean_trajectories=float(ns.mean()),
        mean_students=float((ns * ms).mean()),
        mean_cost=float(costs.mean()),
        power=float(sum(np.mean(answer == a) for a in right)),
    )


def schedule_fractions(sd_between: float, sd_within: float, schedule: Sequence[tuple[int, int]]) -> list[float]:
    """Information fractions of the looks computed with the TRUE sds (a real run uses estimates)."""
    info = [information(sd_between, sd_within, n, m) for n, m in schedule]
    if any(i is None for i in info):
        raise ValueError("the sds give no information (both zero)")
    return [i / info[-1] for i in info]


def simulate(
    theta: float,
    sd_between: float,
    sd_within: float,
    schedule: Sequence[tuple[int, int]],
    alpha: float,
    margin: float,
    reps: int,
    seed: int,
    kind: str = "obf",
    cost: Callable[[int, int], float] = default_cost,
) -> SimResult:
    """Simulate the group-sequential design with looks at ``schedule``'s (n, m) (nested; the
    last look has fraction 1; fractions from the true sds); each rep stops at its deciding look
    and costs ``cost(n, m)`` there."""
    bounds = boundaries(schedule_fractions(sd_between, sd_within, schedule), alpha, kind)
    means = trajectory_means(theta, sd_between, sd_within, schedule, reps, seed)
    answer, stop = simulate_bounds(means, bounds, margin)
    return summarize(answer, stop, schedule, right_answers(theta, margin), cost)


def _check_schedule(schedule: Sequence[tuple[int, int]]) -> None:
    """Looks must be nested: n and m non-decreasing, and each look must add something."""
    if not schedule:
        raise ValueError("empty schedule")
    for (n0, m0), (n1, m1) in zip(schedule, schedule[1:]):
        if n1 < n0 or m1 < m0 or (n1, m1) == (n0, m0):
            raise ValueError(f"schedule must grow (nested looks): {list(schedule)}")
    if schedule[0][0] < 1 or schedule[0][1] < 1:
        raise ValueError("each look needs n >= 1 trajectories and m >= 1 students")
