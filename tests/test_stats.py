"""Clustered paired statistics: known answers and agreement with scipy / statsmodels.

The calibration of these tests under simulated nulls and planted effects is in
tests/test_verdict_simulation.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_paired

from harness.report.board import build_leaderboard
from harness.report.paired import decide
from harness.report.stats import (
    BETTER,
    EQUIVALENT,
    MAX_TRAJECTORIES,
    UNDECIDED,
    WORSE,
    answer,
    answer_text,
    cluster_sd,
    clustered_test,
    holm,
    mean_interval,
    min_detectable_effect,
    power_of_test,
    proportion_interval,
    spearman,
    trajectories_needed,
    variance_components,
)

# 4 trajectories with 1-3 students each: trajectory means 0.02, -0.005, 0.007, 0.002
UNEVEN = {0: [0.01, 0.03], 1: [-0.005], 2: [0.004, 0.006, 0.011], 3: [0.002]}
MEANS = np.array([0.02, -0.005, 0.007, 0.002])


def test_clustered_test_is_the_t_test_of_the_trajectory_means():
    r = clustered_test(UNEVEN, margin=0.005)
    t = stats.ttest_1samp(MEANS, 0.0)
    ci = t.confidence_interval(0.95)
    assert r.p_value == pytest.approx(t.pvalue) and (r.diff_ci_low, r.diff_ci_high) == (
        pytest.approx(ci.low),
        pytest.approx(ci.high),
    )
    assert r.diff_mean == pytest.approx(MEANS.mean()) and r.diff_sd == pytest.approx(MEANS.std(ddof=1))
    assert (r.n, r.students, r.per_cluster_min, r.per_cluster_max) == (4, 7, 1, 3)
    assert (r.wins, r.ties, r.losses) == (3, 0, 1)
    assert r.test == "t-test of 4 trajectory means (1-3 student(s) each; df 3)"
    # the student-level test would see 7 values; the clustered one sees 4 means, whatever the keys
    assert clustered_test({str(k): v for k, v in UNEVEN.items()}).p_value == pytest.approx(t.pvalue)


def test_students_are_averaged_inside_their_trajectory():
    r = clustered_test({"a": [1.0, 3.0], "b": [2.0]})  # means [2, 2]: no spread between trajectories
    assert (r.n, r.students, r.diff_mean, r.diff_sd) == (2, 3, 2.0, 0.0)
    assert math.isnan(r.diff_ci_low) and math.isnan(r.p_value) and (r.wins, r.ties, r.losses) == (2, 0, 0)
    assert r.diff_sd_within == pytest.approx(math.sqrt(2)) and r.diff_sd_between == 0.0
    with pytest.raises(ValueError, match="at least one trajectory"):
        clustered_test({"a": []})


def test_variance_components_by_hand():
    # within: each cluster's sum of squares is 2, dof 3 -> var 2; means 2, 3, 7 -> var 7;
    # each mean carries within / 2 = 1 of it -> between var 6
    between, within = variance_components([np.array(g, dtype=float) for g in ([1, 3], [2, 4], [6, 8])])
    assert (between, within) == (pytest.approx(math.sqrt(6)), pytest.approx(math.sqrt(2)))
    assert variance_components([np.array([1.0, 3.0])]) == (None, pytest.approx(math.sqrt(2)))
    single = variance_components([np.array([x]) for x in (1.0, 2.0, 4.0)])  # one student each
    assert single == (pytest.approx(math.sqrt(7 / 3)), None)
    clipped = variance_components([np.array([0.0, 10.0]), np.array([5.0, 5.0])])  # equal means
    assert clipped[0] == 0.0 and clipped[1] == pytest.approx(5.0)


def test_tost_p_matches_statsmodels():
    for margin in (0.005, 0.01, 0.02):
        p, _, _ = ttost_paired(MEANS, np.zeros(len(MEANS)), -margin, margin)
        assert clustered_test(UNEVEN, margin).p_tost == pytest.approx(p)
    tight = {t: [0.001 + 0.0005 * t, 0.001 - 0.0005 * t] for t in range(6)}  # means all 0.001: sd 0
    # trajectory means without spread prove nothing (two trajectories one test example apart
    # would otherwise be "significant"): no p, no interval, undecided; all-zero differences are
    # no difference and inside any margin
    flat = clustered_test(tight, 0.005)
    assert math.isnan(flat.p_value) and math.isnan(flat.p_tost) and math.isnan(flat.diff_ci_low)
    zero = clustered_test({t: [0.0, 0.0] for t in range(3)}, 0.005)
    assert (zero.p_value, zero.p_tost, zero.diff_ci_low, zero.diff_ci_high) == (1.0, 0.0, 0.0, 0.0)


def test_one_trajectory_cannot_be_tested():
    r = clustered_test({0: [0.1, 0.2]})
    assert r.n == 1 and math.isnan(r.p_value) and math.isnan(r.p_tost) and math.isnan(r.diff_ci_low)
    assert r.diff_sd is None and r.diff_sd_between is None and r.diff_sd_within == pytest.approx(0.1 / math.sqrt(2))
    family = [r.as_dict()]
    decide(family, 0.05)
    assert family[0]["answer"] == UNDECIDED and family[0]["more_trajectories"] is None
    assert family[0]["verdict"] == "undecided: needs at least 2 trajectories"


def test_answers_and_their_words():
    # a significant difference first, then equivalence, else undecided
    assert answer(0.01, 0.01, 0.01) == BETTER and answer(-0.01, 0.01, 0.01) == WORSE
    assert answer(0.001, 0.2, 0.01) == EQUIVALENT and answer(0.001, 0.2, 0.2) == UNDECIDED
    assert answer(0.01, math.nan, math.nan) == UNDECIDED and answer(0.0, 0.0, 0.5) == UNDECIDED
    assert answer(0.01, 0.04, 0.5, alpha=0.01) == UNDECIDED and answer(0.01, 0.04, 0.5) == BETTER
    assert answer_text(BETTER, 0.005, None, 5) == "better" and answer_text(WORSE, 0.005, None, 5) == "worse"
    assert answer_text(EQUIVALENT, 0.005, None, 5) == "equivalent within ±0.50 pp"
    assert answer_text(BETTER, 0.005, None, 5, within=True) == "better, by less than ±0.50 pp"
    assert answer_text(UNDECIDED, 0.005, 7, 5) == "undecided: about 7 more trajectories would decide it"
    assert answer_text(UNDECIDED, 0.005, 1, 5) == "undecided: about 1 more trajectory would decide it"
    assert answer_text(UNDECIDED, 0.005, MAX_TRAJECTORIES + 1, 5) == (
        f"undecided: more than {MAX_TRAJECTORIES} more trajectories"
    )
    assert answer_text(UNDECIDED, 0.005, None, 5) == "undecided"
    assert answer_text(UNDECIDED, 0.005, 3, 1) == "undecided: needs at least 2 trajectories"


def test_holm_matches_statsmodels():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    p = [0.001, 0.2, 0.012, 0.04, 0.5]
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    out = holm([0.02, math.nan, 0.5])
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)


def test_power_known_answers():
    # one-sample t-test, n = 9, alpha 0.05, power 0.8: Cohen's d = 1.0670 (statsmodels / G*Power)
    assert min_detectable_effect(1.0, 9) == pytest.approx(1.0670, abs=1e-3)
    assert min_detectable_effect(0.5, 9) == pytest.approx(0.5335, abs=1e-3)
    assert power_of_test(min_detectable_effect(0.006, 5), 0.006, 5) == pytest.approx(0.8, abs=1e-6)
    assert cluster_sd(0.003, 0.004, 2) == pytest.approx(math.sqrt(0.003**2 + 0.004**2 / 2))
    assert cluster_sd(None, 0.004, 1) == 0.004 and cluster_sd(None, None, 2) is None
    assert min_detectable_effect(0.5, 1) is None and min_detectable_effect(None, 5) is None
    assert trajectories_needed(0.003, None, None, 2) is None and trajectories_needed(0.0, 0.003, 0.003, 2) is None
    # the trajectories needed for the MDE of n trajectories is n
    for n in (5, 12, 30):
        sd = cluster_sd(0.003, 0.004, 2)
        assert trajectories_needed(min_detectable_effect(sd, n) * 1.0001, 0.003, 0.004, 2) == n


def test_intervals_and_spearman_match_scipy():
    m, lo, hi = mean_interval([1.0, 2.0, 4.0])
    ci = stats.ttest_1samp([1.0, 2.0, 4.0], 0).confidence_interval(0.95)
    assert (m, lo, hi) == (pytest.approx(7 / 3), pytest.approx(ci.low), pytest.approx(ci.high))
    p, lo, hi = proportion_interval(3, 5)
    # Clopper-Pearson = beta quantiles: Beta(k, n-k+1) at 2.5%, Beta(k+1, n-k) at 97.5%
    assert p == 0.6 and (lo, hi) == (
        pytest.approx(stats.beta.ppf(0.025, 3, 3)),
        pytest.approx(stats.beta.ppf(0.975, 4, 2)),
    )
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def _table(rng: np.random.Generator, n: int, effects: dict[str, float]) -> list[dict]:
    """Result rows of one simulated leaderboard (student seed s learns from trajectory s mod 5):
    a shared per-seed effect (teacher run + student init), independent run noise, and a planted
    effect per teacher choice."""
    rows = []
    seed_effect = rng.normal(0, 0.005, n)
    for choice, effect in {"full": 0.0, **effects}.items():
        for s in range(n):
            acc = 0.70 + effect + seed_effect[s] + rng.normal(0, 0.004)
            rows.append(
                {
                    "run_id": f"{choice}-{s}",
                    "dataset": "mnist1d",
                    "teacher_choice": choice,
                    "teacher_arch": "cnn1d_small",
                    "teacher_seed": s % 5,
                    "student_arch": "mlp_small",
                    "seed": s,
                    "temperature": 4.0,
                    "kd_weight": 0.5,
                    "ensemble_reduce": "probs",
                    "teacher_checkpoints": [
                        {"trajectory": f"t-s{s % 5}", "epoch": int(choice.partition(":")[2] or 80)}
                    ],
                    "final_val_acc": acc,
                    "final_test_acc": acc,
                    "epochs": 30,
                }
            )
    return rows


def test_a_planted_effect_is_detected_and_its_sign_is_right():
    rng = np.random.default_rng(1)
    board = {
        b["teacher_choice"]: b
        for b in build_leaderboard(_table(rng, 10, {"epoch:40": 0.01, "epoch:20": -0.01, "epoch:60": 0.0}))
    }
    better, worse, null = (board[c]["vs_ref"] for c in ("epoch:40", "epoch:20", "epoch:60"))
    assert (better["answer"], worse["answer"]) == (BETTER, WORSE)
    assert (better["verdict"], worse["verdict"]) == ("better", "worse")
    assert null["answer"] == EQUIVALENT
    assert (better["n"], better["students"], better["per_cluster_min"], better["per_cluster_max"]) == (5, 10, 2, 2)
    assert better["diff_ci_low"] < 0.01 < better["diff_ci_high"]
    assert board["full"]["vs_ref"] == {"self": True, "ref": "full"}
