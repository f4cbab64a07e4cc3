"""The adaptive sweep's round planner: which kind of replicate the next round buys, how many,
and that every plan fits the budget (harness.adaptive_plan)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.adaptive_plan import (
    GROWTH,
    Budget,
    Compute,
    Costs,
    Need,
    can_continue,
    final_design,
    plan_round,
    round_cost,
    within,
)
from harness.report.sequential import information

COSTS = Costs(
    teacher_epochs_per_trajectory=10.0,
    student_epochs_per_student=3.0,
    hours_per_teacher_epoch=0.2,
    hours_per_student_epoch=0.05,
)
ROOMY = Budget(device_hours=1e6)
MARGIN, ALPHA = 0.005, 0.05 / 3
EASY = Need("easy", diff=0.05, sd_between=0.004, sd_within=0.002)  # decided long before n = 8
HARD = Need("hard", diff=0.0045, sd_between=0.02, sd_within=0.002)  # near the margin: needs far more than 2x


def info(need: Need, n: int, m: int) -> float:
    return information(need.sd_between, need.sd_within, n, m)


def test_round_cost_by_hand():
    cost = round_cost(4, 2, 6, 3, COSTS)
    # 2 new teachers x 10 epochs; 6*3 - 4*2 = 10 new student cells x 3 epochs
    assert cost == Compute(teacher_epochs=20.0, student_epochs=30.0, device_hours=20 * 0.2 + 30 * 0.05)
    assert round_cost(4, 2, 4, 2, COSTS) == Compute()
    assert (cost + cost).as_dict() == {"teacher_epochs": 40.0, "student_epochs": 60.0, "device_hours": 11.0}
    with pytest.raises(ValueError):
        round_cost(4, 2, 3, 2, COSTS)


def test_within_checks_every_set_axis_only():
    spent, extra = Compute(5, 5, 5), Compute(1, 1, 1)
    assert within(spent, extra, Budget(teacher_epochs=6))
    assert not within(spent, extra, Budget(teacher_epochs=5.9))
    assert not within(spent, extra, Budget(teacher_epochs=100, student_epochs=5.5))
    assert not within(spent, extra, Budget(device_hours=5.99))
    assert within(spent, extra, Budget(student_epochs=6, device_hours=6))
    with pytest.raises(ValueError):
        Budget()
    with pytest.raises(ValueError):
        Budget(device_hours=-1.0)


def test_trajectory_variance_dominating_buys_trajectories():
    need = Need("a", diff=0.003, sd_between=0.02, sd_within=0.001)
    plan = plan_round(10, 2, [need], Compute(), ROOMY, COSTS)
    assert plan.action == "trajectories" and plan.m == 2 and plan.n > 10
    assert plan.new_trajectories == plan.n - 10 and plan.new_students == plan.n * 2 - 20
    assert plan.cost == round_cost(10, 2, plan.n, 2, COSTS)
    assert plan.stop is None and "trajectories" in plan.why


@pytest.mark.parametrize("m", [1, 2, 3])
def test_student_variance_dominating_with_a_measured_split_buys_students(m):
    need = Need("a", diff=0.003, sd_between=0.0005, sd_within=0.03)
    plan = plan_round(10, m, [need], Compute(), ROOMY, COSTS)
    assert plan.action == "students" and plan.m > m
    assert plan.new_students == plan.n * plan.m - 10 * m
    assert info(need, plan.n, plan.m) >= 1.25 * info(need, 10, m) * (1 - 1e-9)


def test_students_alone_when_they_reach_the_target_cheapest():
    """Student variance dominating at m=5: more students on the same 10 trajectories (no teacher
    epochs) beat one more student plus new trajectories, per hour."""
    need = Need("a", diff=0.003, sd_between=0.0005, sd_within=0.03)
    plan = plan_round(10, 5, [need], Compute(), ROOMY, COSTS)
    assert plan.action == "students" and plan.n == 10 and plan.m > 6 and plan.cost.teacher_epochs == 0
    assert info(need, plan.n, plan.m) >= 1.25 * info(need, 10, 5) * (1 - 1e-9)


def test_unknown_split_buys_trajectories_and_says_so():
    # the numbers of the previous test, but one student per trajectory: the split is not measured
    need = Need("a", diff=0.003, sd_between=0.03, sd_within=None)
    plan = plan_round(10, 1, [need], Compute(), ROOMY, COSTS)
    assert plan.action == "trajectories" and plan.m == 1 and plan.n > 10
    assert "unknown" in plan.why


def test_no_known_spread_starts_with_trajectories():
    for n, need in ((1, Need("a", 0.003, None, None)), (5, Need("a", 0.0, 0.0, 0.0))):
        plan = plan_round(n, 1, [need], Compute(), ROOMY, COSTS)
        assert (plan.action, plan.n, plan.m) == ("trajectories", max(2, math.ceil(GROWTH * n)), 1)
        assert "spread" in plan.why


def test_the_measured_hour_rates_decide_between_the_kinds():
    need = Need("a", diff=0.003, sd_between=0.004, sd_within=0.008)
    budget = Budget(device_hours=1e6)
    cheap_teachers = Costs(10.0, 3.0, hours_per_teacher_epoch=0.001, hours_per_student_epoch=1.0)
    dear_teachers = Costs(10.0, 3.0, hours_per_teacher_epoch=10.0, hours_per_student_epoch=0.001)
    cheap = plan_round(10, 2, [need], Compute(), budget, cheap_teachers)
    dear = plan_round(10, 2, [need], Compute(), budget, dear_teachers)
    assert (cheap.action, dear.action) == ("trajectories", "students")
    for plan, costs in ((cheap, cheap_teachers), (dear, dear_teachers)):
        c = plan.cost
        assert c.device_hours == pytest.approx(
            c.teacher_epochs * costs.hours_per_teacher_epoch + c.student_epochs * costs.hours_per_student_epoch
        )


def test_device_hours_budget_uses_the_rates():
    need = Need("a", diff=0.003, sd_between=0.02, sd_within=0.001)
    # one more trajectory at m = 2: 10 teacher epochs (2 h) + 6 student epochs (0.3 h) = 2.3 h
    spent = Compute(device_hours=100.0)
    plan = plan_round(10, 2, [need], spent, Budget(device_hours=100 + 3 * 2.3), COSTS)
    assert (plan.action, plan.n, plan.m) == ("trajectories", 13, 2) and "budget" in plan.why
    stopped = plan_round(10, 2, [need], spent, Budget(device_hours=100.2), COSTS)
    assert (stopped.action, stopped.stop, stopped.n, stopped.m) == ("stop", "budget", 10, 2)


def test_each_round_multiplies_the_information_by_growth_whatever_the_differences():
    for growth in (1.25, 1.6, 4.0):
        plans = [plan_round(8, 2, [need], Compute(), ROOMY, COSTS, growth=growth) for need in (EASY, HARD)]
        for need, plan in zip((EASY, HARD), plans, strict=True):
            ratio = info(need, plan.n, plan.m) / info(need, 8, 2)
            fewer = info(need, plan.n - 1, plan.m) / info(need, 8, 2)
            assert ratio >= growth * (1 - 1e-9) and fewer < growth  # the fewest trajectories that reach it
        assert (plans[0].n, plans[0].m) == (plans[1].n, plans[1].m)  # the observed difference plays no part
    assert plan_round(8, 2, [HARD], Compute(), ROOMY, COSTS, growth=4.0).n == 32


def test_random_budgets_are_never_exceeded():
    rng = np.random.default_rng(24)
    for _ in range(150):
        n, m = int(rng.integers(2, 30)), int(rng.integers(1, 6))
        costs = Costs(*rng.uniform(0.5, 20, 2), *rng.uniform(0.001, 1.0, 2))
        limits = rng.uniform(0, 400, 3) * (rng.random(3) < 0.6)
        limits[rng.integers(3)] = rng.uniform(0, 400)
        budget = Budget(*(float(v) if v > 0 else None for v in limits))
        spent = Compute(*rng.uniform(0, 100, 3))
        sd_w = None if m == 1 and rng.random() < 0.5 else float(rng.uniform(0.0005, 0.03))
        needs = [Need(f"c{i}", float(rng.normal(0, 0.005)), float(rng.uniform(0, 0.02)), sd_w) for i in range(3)]
        plan = plan_round(n, m, needs, spent, budget, costs)
        for axis, limit in budget.__dict__.items():  # the round's own cost fits what is left
            extra = getattr(plan.cost, axis)
            assert limit is None or extra == 0 or getattr(spent, axis) + extra <= limit * (1 + 1e-9) + 1e-9
        if can_continue(n, m, spent, budget, costs):
            assert plan.action in ("trajectories", "students") and (plan.n, plan.m) != (n, m)
            assert plan.n >= n and plan.m >= m
        else:
            assert (plan.action, plan.stop, plan.cost) == ("stop", "budget", Compute())


def test_nothing_undecided_stops_without_a_budget_reason():
    plan = plan_round(8, 2, [], Compute(), ROOMY, COSTS)
    assert (plan.action, plan.stop, plan.n, plan.m) == ("stop", None, 8, 2)
    assert final_design(8, 2, [], Compute(), ROOMY, COSTS) == (8, 2)


def test_final_design_is_what_the_rounds_reach_within_the_budget():
    needs = [Need("a", 0.002, 0.004, 0.01), Need("b", -0.001, 0.002, 0.02)]
    budget, spent = Budget(teacher_epochs=600.0, student_epochs=2000.0), Compute(100.0, 120.0, 0.0)
    n, m, total = 10, 4, spent
    for _ in range(1000):
        plan = plan_round(n, m, needs, total, budget, COSTS)
        if plan.action == "stop":
            break
        n, m, total = plan.n, plan.m, total + plan.cost
    assert plan.stop == "budget" and (n, m) != (10, 4)
    assert final_design(10, 4, needs, spent, budget, COSTS) == (n, m)
    assert within(spent, round_cost(10, 4, n, m, COSTS), budget)
    assert not can_continue(n, m, spent + round_cost(10, 4, n, m, COSTS), budget, COSTS)


def test_plans_are_deterministic_and_ignore_the_order_of_the_needs():
    needs = [Need("a", 0.002, 0.004, 0.01), Need("b", 0.002, 0.004, 0.01), EASY]
    one = plan_round(6, 2, needs, Compute(), ROOMY, COSTS)
    assert one == plan_round(6, 2, needs[::-1], Compute(), ROOMY, COSTS)
    assert one == plan_round(6, 2, list(needs), Compute(), ROOMY, COSTS)
