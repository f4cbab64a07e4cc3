"""Group-sequential answers (harness.report.sequential) and seeded simulations of whole adaptive
designs under the hierarchical model (harness.report.sequential_sim)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as st

from harness.report import stats
from harness.report.sequential import (
    SPENDING,
    Bounds,
    LookResult,
    boundaries,
    decide,
    fixed_trajectories,
    information,
    look,
    spent,
)
from harness.report.sequential_sim import (
    default_cost,
    schedule_fractions,
    simulate,
    simulate_bounds,
    t_pvalues,
    trajectory_means,
)

ALPHA = 0.05
REPS = 20_000
FIVE = [0.2, 0.4, 0.6, 0.8, 1.0]
GS_OBF = [4.877, 3.357, 2.680, 2.290, 2.031]  # gsDesign sfLDOF, K=5, one-sided 0.025
GS_POCOCK = [2.44, 2.43, 2.41, 2.40, 2.39]  # gsDesign sfLDPocock, K=5, one-sided 0.025 (rounded)
M_FIXED = [(4, 2), (8, 2), (12, 2), (16, 2), (20, 2)]
M_GROWING = [(3, 1), (5, 1), (8, 2), (12, 2), (16, 3)]
# The significance level approach (t-tests at the normal-theory nominal levels) is approximate
# with few trajectories (Jennison & Turnbull 2000, ch. 11): spending all of alpha, 200k-rep runs of
# these schedules give type-I errors 0.0505-0.0525 (OBF) and 0.052-0.056 (Pocock) at alpha 0.05, so
# the boundaries spend SPEND_SHARE (0.9) of alpha and the simulations below assert at most alpha.


def mc_se(p: float, reps: int = REPS) -> float:
    return math.sqrt(p * (1 - p) / reps)


# ---------------------------------------------------------------------------------------------
# spending and boundaries


@pytest.mark.parametrize("kind", SPENDING)
def test_spent_reaches_alpha_and_grows(kind):
    ts = np.linspace(0.05, 1.0, 20)
    values = [spent(t, ALPHA, kind) for t in ts]
    assert values[-1] == ALPHA and spent(1.7, ALPHA, kind) == ALPHA
    assert all(b > a for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError):
        spent(0.0, ALPHA, kind)


def test_obf_spends_almost_nothing_early():
    assert spent(0.2, ALPHA, "obf") < 1e-4 < spent(0.2, ALPHA, "pocock")
    with pytest.raises(ValueError):
        spent(0.5, ALPHA, "haybittle")


def test_one_look_is_the_fixed_design():
    (b,) = boundaries([1.0], ALPHA, share=1.0)
    assert b.z_diff == pytest.approx(st.norm.isf(ALPHA / 2), abs=1e-9)
    assert b.z_equiv == pytest.approx(st.norm.isf(ALPHA), abs=1e-9)
    assert b.nominal_diff == pytest.approx(ALPHA) and b.nominal_equiv == pytest.approx(ALPHA)


def test_obf_matches_gsdesign():
    one_sided = [b.z_equiv for b in boundaries(FIVE, 0.025, "obf", share=1.0)]
    assert one_sided == pytest.approx(GS_OBF, abs=0.005)
    two_sided = boundaries(FIVE, 0.05, "obf", share=1.0)  # symmetric: each side spends 0.025
    assert [b.z_diff for b in two_sided] == pytest.approx(GS_OBF, abs=0.005)
    assert [b.nominal_diff for b in two_sided] == pytest.approx([2 * st.norm.sf(z) for z in GS_OBF], rel=0.05)


def test_pocock_matches_gsdesign():
    assert [b.z_equiv for b in boundaries(FIVE, 0.025, "pocock", share=1.0)] == pytest.approx(GS_POCOCK, abs=0.02)


@pytest.mark.parametrize("kind", SPENDING)
def test_boundaries_spend_as_promised_monte_carlo(kind):
    """Known-variance Z statistics on a Brownian motion at unequal fractions: P(first crossing
    by look k) = spent(t_k) (one-sided) and alpha in all (two-sided)."""
    fractions = [0.15, 0.3, 0.55, 0.8, 1.0]
    bounds = boundaries(fractions, ALPHA, kind, share=1.0)
    rng = np.random.default_rng(7)
    steps = rng.normal(size=(200_000, len(fractions))) * np.sqrt(np.diff([0.0, *fractions]))
    z = np.cumsum(steps, axis=1) / np.sqrt(fractions)
    one = np.maximum.accumulate(z > [b.z_equiv for b in bounds], axis=1).mean(axis=0)
    se = math.sqrt(ALPHA / 200_000)
    assert one == pytest.approx([spent(t, ALPHA, kind) for t in fractions], abs=4 * se)
    two = (np.abs(z) > [b.z_diff for b in bounds]).any(axis=1).mean()
    assert two == pytest.approx(ALPHA, abs=4 * se)


def test_adding_a_look_keeps_earlier_bounds():
    short, long = boundaries([0.3, 0.6], ALPHA), boundaries([0.3, 0.6, 0.8, 1.0], ALPHA)
    assert long[:2] == short


def test_fractions_must_increase_and_a_full_look_spends_all():
    for bad in ([0.5, 0.5], [0.6, 0.4], [0.0, 1.0], []):
        with pytest.raises(ValueError):
            boundaries(bad, ALPHA)
    last = boundaries([0.5, 1.0, 1.4], ALPHA)[-1]
    assert math.isinf(last.z_diff) and last.nominal_diff == 0.0 and last.nominal_equiv == 0.0


# ---------------------------------------------------------------------------------------------
# one look, decisions


FIXED = Bounds(1.0, st.norm.isf(ALPHA / 2), st.norm.isf(ALPHA), ALPHA, ALPHA)


def test_look_at_full_information_is_the_clustered_test():
    rng = np.random.default_rng(3)
    diffs = {t: list(0.01 + rng.normal(0, 0.02, size=3)) for t in range(6)}
    r, ref = look(diffs, FIXED, 0.01), stats.clustered_test(diffs, 0.01)
    assert r.p_value == pytest.approx(ref.p_value) and max(r.p_lower, r.p_upper) == pytest.approx(ref.p_tost)
    assert (r.ci_low, r.ci_high) == pytest.approx((ref.diff_ci_low, ref.diff_ci_high))
    assert (r.n, r.m, r.students, r.sd_between, r.sd_within) == (6, 3, 18, ref.diff_sd_between, ref.diff_sd_within)
    assert set(r.as_dict()) == {f.name for f in dataclasses.fields(LookResult)}


def test_look_uses_the_nominal_level_and_decide_the_sign():
    diffs = {t: [-0.03 + 0.002 * t, -0.031 + 0.001 * t] for t in range(5)}
    loose, strict = look(diffs, FIXED, 0.005), look(diffs, boundaries([0.2, 1.0], ALPHA)[0], 0.005)
    assert loose.rejects_diff and not strict.rejects_diff
    assert strict.ci_high - strict.ci_low > loose.ci_high - loose.ci_low  # repeated CI is wider
    assert decide([strict, loose]) == (stats.WORSE, 1)
    flipped = look({t: [-x for x in v] for t, v in diffs.items()}, FIXED, 0.005)
    assert decide([flipped, loose]) == (stats.BETTER, 0)  # the first decision stands


def test_tost_halves_are_sticky():
    base = look({t: [0.001 * t, -0.001 * t] for t in range(4)}, FIXED, 0.005)
    only_low = dataclasses.replace(base, rejects_diff=False, rejects_lower=True, rejects_upper=False)
    only_up = dataclasses.replace(base, rejects_diff=False, rejects_lower=False, rejects_upper=True)
    assert decide([only_low, only_up]) == (stats.EQUIVALENT, 1)
    assert decide([only_low, only_low]) == (stats.UNDECIDED, None)
    assert decide([]) == (stats.UNDECIDED, None)


def test_small_and_degenerate_looks():
    one = look({"a": [0.5, 0.4]}, FIXED, 0.01)
    assert one.n == 1 and math.isnan(one.ci_low) and math.isnan(one.p_value)
    assert not (one.rejects_diff or one.rejects_lower or one.rejects_upper)
    zero = look({t: [0.0, 0.0] for t in range(3)}, FIXED, 0.01)
    assert (zero.p_value, zero.ci_low, zero.ci_high) == (1.0, 0.0, 0.0)
    assert decide([zero]) == (stats.EQUIVALENT, 0)
    same = look({t: [0.02] for t in range(3)}, FIXED, 0.01)  # no spread, not zero: proves nothing
    assert decide([same]) == (stats.UNDECIDED, None) and math.isnan(same.ci_low)


def test_information_and_fixed_design():
    assert information(1.0, 2.0, 5, 4) == pytest.approx(2.5)
    assert information(None, None, 5, 4) is None and information(0.0, 0.0, 5, 4) is None
    assert information(None, 2.0, 5, 4) == pytest.approx(5.0)
    need = fixed_trajectories(0.01, 0.01, 0.02, 4, margin=0.0, alpha=ALPHA)
    assert need == stats.trajectories_needed(0.01, 0.01, 0.02, 4, ALPHA)
    assert fixed_trajectories(0.01, 0.01, 0.02, 4, 0.0, ALPHA, power=0.95) > need
    assert fixed_trajectories(0.01, None, None, 4, 0.0, ALPHA) is None


# ---------------------------------------------------------------------------------------------
# simulations


def test_simulated_pvalues_are_look_pvalues():
    means = trajectory_means(0.1, 1.0, 2.0, M_GROWING, reps=4, seed=1)
    rng_check = trajectory_means(0.1, 1.0, 2.0, M_GROWING, reps=4, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(means, rng_check))  # seeded
    for k in range(len(M_GROWING)):
        p, lo, up = t_pvalues(means[k], 0.2)
        for rep in range(4):
            r = look({t: [x] for t, x in enumerate(means[k][rep])}, FIXED, 0.2)
            assert (p[rep], lo[rep], up[rep]) == pytest.approx((r.p_value, r.p_lower, r.p_upper))


def test_looks_are_nested():
    """Existing trajectories keep their students when m grows: a trajectory mean at look k+1
    averages look k's students with new ones."""
    means = trajectory_means(0.0, 0.0, 1.0, [(2, 1), (3, 2)], reps=50_000, seed=2)
    corr = np.corrcoef(means[0][:, 0], means[1][:, 0])[0, 1]
    assert corr == pytest.approx(math.sqrt(0.5), abs=0.02)  # sqrt(Var(mean of 2) / Var(one))


def _naive(sd_b, schedule, margin, seed):
    """The same looks, each at the fixed design's nominal alpha: what sequential testing fixes."""
    means = trajectory_means(0.0, sd_b, 1.0, schedule, REPS, seed)
    answer, _ = simulate_bounds(means, [FIXED] * len(schedule), margin)
    return float(np.mean((answer == stats.BETTER) | (answer == stats.WORSE)))


@pytest.mark.parametrize("ratio", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("schedule", [M_FIXED, M_GROWING], ids=["m-fixed", "m-growing"])
def test_type_one_error_across_looks(ratio, schedule):
    margin = 0.01  # narrow: equivalence rarely stops a rep before the difference test can err
    r = simulate(0.0, ratio, 1.0, schedule, ALPHA, margin, REPS, seed=11)
    err, naive = r.decided[stats.BETTER] + r.decided[stats.WORSE], _naive(ratio, schedule, margin, seed=11)
    print(f"sd_b/sd_w={ratio} {len(schedule)} looks: type-I obf {err:.4f} naive {naive:.4f} (MC SE {mc_se(ALPHA):.4f})")
    assert err <= ALPHA, f"type-I {err:.4f} > alpha {ALPHA} (MC SE {mc_se(ALPHA):.4f})"
    assert naive > ALPHA + 3 * mc_se(ALPHA) and naive > 2 * err, f"naive {naive:.4f} vs sequential {err:.4f}"


def test_type_one_error_pocock():
    r = simulate(0.0, 1.0, 1.0, M_GROWING, ALPHA, 0.01, REPS, seed=12, kind="pocock")
    err = r.decided[stats.BETTER] + r.decided[stats.WORSE]
    print(f"pocock type-I {err:.4f}")
    assert err <= ALPHA, f"type-I {err:.4f} > alpha (MC SE {mc_se(ALPHA):.4f})"


@pytest.mark.parametrize("ratio", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("schedule", [M_FIXED, M_GROWING], ids=["m-fixed", "m-growing"])
def test_equivalence_error_at_the_margin(ratio, schedule):
    # 0.7 cluster sd at the last look: the difference test seldom stops a rep at theta = ±margin
    # before the TOST half under test can err (at 1 sd it does, and the error halves)
    margin = 0.7 * math.sqrt(ratio**2 + 1.0 / schedule[-1][1])
    inside = simulate(0.0, ratio, 1.0, schedule, ALPHA, margin, REPS, seed=21)
    assert inside.decided[stats.EQUIVALENT] > 0.5  # the TOST has power here: the check below can fail
    for sign, seed in ((1, 22), (-1, 23)):
        r = simulate(sign * margin, ratio, 1.0, schedule, ALPHA, margin, REPS, seed=seed)
        wrong = r.decided[stats.EQUIVALENT]
        print(f"sd_b/sd_w={ratio} theta={sign}margin: equivalent {wrong:.4f} (MC SE {mc_se(ALPHA):.4f})")
        assert wrong <= ALPHA, f"equivalence error {wrong:.4f} > alpha (MC SE {mc_se(ALPHA):.4f})"


def test_planted_effect_costs_less_than_the_fixed_design():
    sd_b, sd_w, m = 1.0, 1.0, 2
    theta, margin = 0.9, 0.05
    r = simulate(theta, sd_b, sd_w, M_FIXED, ALPHA, margin, REPS, seed=31)
    n_fixed = fixed_trajectories(theta, sd_b, sd_w, m, margin, ALPHA, power=r.power)
    fixed_cost = default_cost(n_fixed, m)
    print(f"power {r.power:.3f}: sequential cost {r.mean_cost:.1f} vs fixed {fixed_cost:.1f} ({n_fixed} traj)")
    assert 0.6 < r.power < 0.99 and r.decided[stats.WORSE] < 0.001
    assert r.mean_cost < 0.9 * fixed_cost, f"sequential {r.mean_cost:.1f} vs fixed {fixed_cost:.1f}"


def test_schedule_checks():
    assert schedule_fractions(1.0, 1.0, [(2, 1), (4, 1)]) == pytest.approx([0.5, 1.0])
    for bad in ([(4, 2), (3, 2)], [(4, 2), (4, 1)], [(4, 2), (4, 2)], []):
        with pytest.raises(ValueError):
            trajectory_means(0.0, 1.0, 1.0, bad, 10, 0)
