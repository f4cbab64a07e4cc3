"""The round planner of an adaptive sweep (``sweep.until: decided``): what the next round adds.

The design after a round is ``(n, m)``: ``n`` teacher trajectories, each teaching ``m`` student
seeds for every teacher choice of the grid. A round adds trajectories (``n -> n'``) and/or raises
``m`` on every trajectory (``m -> m'``); neither ever shrinks. The rule, per round:

- **Value.** A comparison's information is ``information(sd_between, sd_within, n, m)`` =
  ``n / (sd_between^2 + sd_within^2 / m)``. A candidate design is worth the information it adds,
  summed over the still-undecided comparisons, per unit of compute: the device hours of the
  round (``round_cost``, with the runner's hours per teacher and per student epoch, which make
  the two comparable: nominal ones from the models' FLOPs, or the measured rates under a
  device-hours budget; epochs are summed while no rate is known).
- **Round size.** Every round multiplies the information of the undecided comparisons by
  ``growth`` (``sweep.growth``, 1.6 by default): a fixed factor, never the observed differences,
  so when the looks fall does not depend on the effect under test (sizing rounds by the observed
  difference lets the look timing follow the data and inflated the type-I error in the seeded
  simulations); which kind buys it depends on the variance components alone.
- **Candidates.** More trajectories at the current ``m`` (the fewest that reach the target),
  one more student seed on every trajectory (``m + 1``) together with the fewest trajectories
  that then reach the target (often none), or, where students alone can reach it, the fewest
  students per trajectory that do on the same ``n`` (the action is "students" whenever ``m``
  rises). The
  larger information per hour wins; a tie goes to trajectories, which shrink both variance
  components. While the split of the variance is unknown (``sd_within`` is None: one student
  per trajectory), or no spread is known at all, trajectories.
- **Budget.** The chosen design is cut to what fits every set axis of ``sweep.budget`` (whole
  trajectories, whole students on every trajectory), else the other kind's smallest step; when
  nothing fits the sweep stops (``stop="budget"``). With nothing undecided the plan is "stop"
  with ``stop=None`` (the runner says "decided").

The planner is deterministic (no randomness, stable tie-breaking) and pure: no store, no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from harness.report.sequential import information

TRAJECTORIES, STUDENTS, STOP = "trajectories", "students", "stop"
MAX_ROUNDS = 1000  # final_design's cap on the rounds it simulates
GROWTH = 1.6  # sweep.growth's default: each round multiplies the information by this
_REL_TOL = 1e-9  # float slack when checking a budget (sums of per-epoch rates)


@dataclass(frozen=True)
class Budget:
    """``sweep.budget``: the most compute the sweep may spend; None = no limit on that axis."""

    teacher_epochs: float | None = None
    student_epochs: float | None = None
    device_hours: float | None = None

    def __post_init__(self) -> None:
        limits = (self.teacher_epochs, self.student_epochs, self.device_hours)
        if all(v is None for v in limits):
            raise ValueError("sweep.budget needs at least one of teacher_epochs, student_epochs, device_hours")
        if any(v is not None and not v >= 0 for v in limits):
            raise ValueError(f"sweep.budget limits must be >= 0, got {limits}")


@dataclass(frozen=True)
class Compute:
    """An amount of compute: spent so far, or one round's cost."""

    teacher_epochs: float = 0.0
    student_epochs: float = 0.0
    device_hours: float = 0.0

    def __add__(self, other: Compute) -> Compute:
        return Compute(
            self.teacher_epochs + other.teacher_epochs,
            self.student_epochs + other.student_epochs,
            self.device_hours + other.device_hours,
        )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Costs:
    """What one trajectory and one student cost, and the measured device hours per epoch."""

    teacher_epochs_per_trajectory: float  # teacher.epochs x teacher archs
    student_epochs_per_student: float  # student.epochs x runs per (trajectory, student seed) of the grid
    hours_per_teacher_epoch: float  # the runner's (nominal from FLOPs, or measured)
    hours_per_student_epoch: float
    # student-epochs trained again per student of a wrapped trajectory when n grows: full_ensemble:K pairs
    # the last K-1 trajectories with the first ones, so those runs get new partners (and new run ids)
    rerun_student_epochs: float = 0.0


@dataclass(frozen=True)
class Need:
    """One still-undecided comparison, as the last look saw it."""

    key: str
    diff: float  # observed mean difference
    sd_between: float | None
    sd_within: float | None  # None when m == 1 (not separable)


@dataclass(frozen=True)
class RoundPlan:
    """The design after the round, what it costs, and why."""

    n: int
    m: int
    new_trajectories: int
    new_students: int  # new (trajectory, seed) cells = n*m - n_prev*m_prev
    cost: Compute
    action: str  # "trajectories" | "students" | "stop"
    why: str
    stop: str | None = None  # None, "budget" or "max_rounds"


def round_cost(n0: int, m0: int, n1: int, m1: int, costs: Costs) -> Compute:
    """Compute of going from design (n0, m0) to (n1, m1): new trajectories' teachers, new student
    cells, and the ensemble runs of the wrapped trajectories that get new partners when n grows."""
    if n1 < n0 or m1 < m0:
        raise ValueError(f"a round never shrinks the design: ({n0}, {m0}) -> ({n1}, {m1})")
    teacher = (n1 - n0) * costs.teacher_epochs_per_trajectory
    student = (n1 * m1 - n0 * m0) * costs.student_epochs_per_student
    student += costs.rerun_student_epochs * m0 if n1 > n0 > 0 else 0.0
    hours = teacher * costs.hours_per_teacher_epoch + student * costs.hours_per_student_epoch
    return Compute(float(teacher), float(student), float(hours))


def within(spent: Compute, extra: Compute, budget: Budget) -> bool:
    """Whether spent + extra holds every set axis of the budget."""
    total = spent + extra
    for axis in ("teacher_epochs", "student_epochs", "device_hours"):
        limit = getattr(budget, axis)
        if limit is not None and getattr(total, axis) > limit * (1 + _REL_TOL) + _REL_TOL:
            return False
    return True


def can_continue(n: int, m: int, spent: Compute, budget: Budget, costs: Costs) -> bool:
    """Whether the smallest step (one more trajectory at m, or one more student on each of the n) fits."""
    return any(within(spent, round_cost(n, m, n1, m1, costs), budget) for n1, m1 in ((n + 1, m), (n, m + 1)))


# ---------------------------------------------------------------------------------------------
# the information of a design


def _split_known(need: Need) -> bool:
    return need.sd_within is not None


def _per_trajectory(need: Need, m: int) -> float | None:
    """Information one trajectory with m students carries for a need; None when the spread is unknown.
    With the split unknown, sd_between is the sd of a trajectory mean at the current m (sd_within 0)."""
    sd_within = need.sd_within if need.sd_within is not None else 0.0
    value = information(need.sd_between, sd_within, 1, m) if need.sd_between is not None else None
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _gain(needs: Sequence[Need], n0: int, m0: int, n1: int, m1: int) -> float:
    """Information added by (n0, m0) -> (n1, m1), summed over the needs whose spread is known."""
    total = 0.0
    for need in needs:
        before, after = _per_trajectory(need, m0), _per_trajectory(need, m1)
        if before is not None and after is not None:
            total += n1 * after - n0 * before
    return total


def _units(cost: Compute) -> float:
    """Device hours; the epochs summed while no hour rate is measured."""
    return cost.device_hours if cost.device_hours > 0 else cost.teacher_epochs + cost.student_epochs


def _rate(gain: float, cost: Compute) -> float:
    units = _units(cost)
    return gain / units if units > 0 else (math.inf if gain > 0 else 0.0)


def _reference(needs: Sequence[Need], m: int) -> Need | None:
    """The need whose variance split sizes the round: the first by key whose spread is known."""
    known = sorted((need for need in needs if _per_trajectory(need, m) is not None), key=lambda need: need.key)
    return known[0] if known else None


# ---------------------------------------------------------------------------------------------
# the round


def _reach(need: Need | None, n: int, m: int, m1: int, ratio: float) -> int:
    """The fewest trajectories (>= n; > n when m1 == m) at m1 students that give ``need`` ``ratio``
    times its information at (n, m)."""
    low = n + 1 if m1 == m else n
    if need is None or n == 0:
        return max(low, 2, math.ceil(n * ratio - 1e-9))
    now, per = n * _per_trajectory(need, m), _per_trajectory(need, m1)
    return max(low, math.ceil(ratio * now / per - 1e-9))


def _largest_fit(lo: int, hi: int, fits: Callable[[int], bool]) -> int | None:
    """The largest k in [lo, hi] with fits(k) (fits holds below some k); None when not even lo fits."""
    if hi < lo or not fits(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _fit(n: int, m: int, n1: int, m1: int, spent: Compute, budget: Budget, costs: Costs) -> int | None:
    """The most trajectories up to n1 (at m1 students) the budget allows; None when none."""
    low = n + 1 if m1 == m else n
    return _largest_fit(low, n1, lambda k: within(spent, round_cost(n, m, k, m1, costs), budget))


def _choose(
    needs: Sequence[Need], n: int, m: int, easiest: Need | None, ratio: float, costs: Costs
) -> tuple[list[tuple[int, int]], str]:
    """Candidate designs, best first, and the sentence comparing them."""
    traj = (_reach(easiest, n, m, m, ratio), m)
    if easiest is None:
        return [traj, (n, m + 1)], "no comparison's spread is known yet (under 2 trajectories, or no variance)"
    if not all(_split_known(need) for need in needs):
        return [traj, (n, m + 1)], "the split between trajectory and student variance is unknown (sd_within None)"
    stud = (_reach(easiest, n, m, m + 1, ratio), m + 1)
    named = [("trajectories", traj), ("m+1", stud)]
    if (m_only := _students_only(easiest, n, m, ratio)) is not None and m_only > m + 1:
        named.append((f"m={m_only}", (n, m_only)))  # students alone, where they can reach the target
    rates = [
        (_rate(_gain(needs, n, m, *d), round_cost(n, m, *d, costs)), -i, name, d) for i, (name, d) in enumerate(named)
    ]
    rates.sort(key=lambda r: (r[0], r[1]), reverse=True)  # the best rate first; ties: the earlier (trajectories)
    split = f"sd_between {easiest.sd_between:.3g} vs sd_within {easiest.sd_within:.3g} at m={m}"
    text = f"{split}: information per hour " + ", ".join(f"{r:.3g} for {name} {d}" for r, _, name, d in rates)
    return [d for *_, d in rates], text


def _students_only(need: Need, n: int, m: int, ratio: float, most: int = 64) -> int | None:
    """The fewest students per trajectory (up to ``most`` x m) at which the n trajectories reach
    ``ratio`` times the need's information at (n, m); None when students alone cannot."""
    now = _per_trajectory(need, m)
    for m1 in range(m + 1, most * m + 1):
        per = _per_trajectory(need, m1)
        if now is None or per is None:
            return None
        if per >= ratio * now - 1e-12:
            return m1
    return None


def plan_round(
    n: int,
    m: int,
    needs: Sequence[Need],
    spent: Compute,
    budget: Budget,
    costs: Costs,
    growth: float = GROWTH,
) -> RoundPlan:
    """What the next round adds to design (n, m) for the still-undecided ``needs`` (the module's rule)."""
    if not needs:
        return RoundPlan(n, m, 0, 0, Compute(), STOP, "nothing is undecided", None)
    if not can_continue(n, m, spent, budget, costs):
        return RoundPlan(n, m, 0, 0, Compute(), STOP, "not even one more trajectory or student fits", "budget")
    reference = _reference(needs, m)
    candidates, text = _choose(needs, n, m, reference, growth, costs)
    aim = f"{growth:g}x the information (sweep.growth)"
    for n1, m1 in candidates:
        fit = _fit(n, m, n1, m1, spent, budget, costs)
        if fit is None:
            continue
        cut = "" if fit == n1 else f", cut to {fit} trajectories by the budget"
        action = STUDENTS if m1 > m else TRAJECTORIES
        why = f"{action}: {text}; {aim}; n {n} -> {fit}, m {m} -> {m1}{cut}."
        return RoundPlan(fit, m1, fit - n, fit * m1 - n * m, round_cost(n, m, fit, m1, costs), action, why)
    return RoundPlan(n, m, 0, 0, Compute(), STOP, "no step fits the budget", "budget")  # pragma: no cover


def final_design(
    n: int,
    m: int,
    needs: Sequence[Need],
    spent: Compute,
    budget: Budget,
    costs: Costs,
    rounds: int = MAX_ROUNDS,
    growth: float = GROWTH,
) -> tuple[int, int]:
    """The (n, m) reached if plan_round is applied round after round until the budget stops it, or
    for ``rounds`` more rounds at most (the sds as they are now): the runner's maximum information
    for the information fractions."""
    if not needs:
        return n, m
    for _ in range(min(rounds, MAX_ROUNDS)):
        plan = plan_round(n, m, needs, spent, budget, costs, growth)
        if plan.action == STOP:
            break
        spent, n, m = spent + plan.cost, plan.n, plan.m
    return n, m
