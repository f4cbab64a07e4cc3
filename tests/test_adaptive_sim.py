"""The runner's round logic (``adaptive.close_round``) on simulated sweeps (``adaptive_sim``):
a planted effect is decided with less compute than the cheapest fixed design of the same power,
and with no effect the looks keep their error rate. The large error-rate tables (1,000 sweeps per
cell) are ``benchmarks/bench_adaptive.py``'s; the boundaries' own 20,000-replicate checks are in
``tests/test_sequential.py``."""

from __future__ import annotations

from harness.adaptive_plan import Budget, Costs
from harness.adaptive_sim import mc_se, simulate_sweep

PP = 0.01
COSTS = Costs(80.0, 330.0, 4.9493e-05, 1.5189e-06)  # the adaptive paper-claims config's nominal costs
BUDGET = Budget(teacher_epochs=1600, student_epochs=12000)


def test_a_planted_effect_is_decided_with_less_compute_than_the_fixed_design():
    """Against the cheapest fixed design of the same power (an oracle that knows the effect and the
    variances), with Pocock-type spending; O'Brien-Fleming-type spending, strict at the early looks,
    costs about as much as that oracle here (benchmarks/bench_adaptive.py has both)."""
    r = simulate_sweep(
        2.5 * PP,
        1.0 * PP,
        1.0 * PP,
        (5, 2),
        BUDGET,
        COSTS,
        alpha=0.0125,
        reps=60,
        seed=3,
        max_rounds=6,
        spending="pocock",
    )
    print(f"power {r.right:.2f}: {r.mean_hours:.4f} h vs fixed {r.fixed_hours:.4f} h {r.fixed_design}")
    assert r.right >= 0.8 and r.answers["worse"] == 0
    assert r.fixed_hours is not None and r.mean_hours < r.fixed_hours
    assert 5 <= r.mean_trajectories and r.mean_rounds >= 1


def test_with_no_effect_the_looks_keep_their_error_rate():
    alpha = 0.2  # large, so that 120 sweeps can tell a broken design (the naive one errs at 0.4-0.5)
    r = simulate_sweep(0.0, 1.0 * PP, 1.0 * PP, (3, 1), BUDGET, COSTS, alpha=alpha, reps=120, seed=5, max_rounds=4)
    err = r.answers["better"] + r.answers["worse"]
    print(f"type-I {err:.3f} (MC SE {mc_se(err, 120):.3f}) at alpha {alpha}; rounds {r.mean_rounds:.1f}")
    assert err <= alpha and r.mean_rounds > 1.5  # several looks, not one
