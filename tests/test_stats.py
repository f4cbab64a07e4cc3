"""Paired statistics: known answers, agreement with scipy/statsmodels, and calibration under the null."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.report.board import build_leaderboard
from harness.report.stats import (
    BETTER,
    NO_DIFF,
    WORSE,
    holm,
    mean_interval,
    min_detectable_effect,
    min_exact_p,
    paired_test,
    pairs_needed,
    proportion_interval,
    spearman,
    verdict,
)


def test_exact_permutation_p_known_answers():
    # 3 positive differences: only 2 of the 2^3 sign patterns are as extreme -> p = 0.25
    assert paired_test([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]).p_value == pytest.approx(0.25)
    # 10 positive differences: p = 2 / 1024
    assert paired_test(np.arange(1, 11) / 100, np.zeros(10)).p_value == pytest.approx(2 / 1024)
    assert min_exact_p(3) == 0.25 and min_exact_p(10) == pytest.approx(2 / 1024)
    one = paired_test([0.7], [0.6])  # one pair: both sign flips are as extreme, no interval
    assert one.p_value == 1.0 and math.isnan(one.diff_ci_low) and one.n == 1


def test_paired_test_matches_scipy_on_fixed_inputs():
    a = np.array([0.712, 0.705, 0.699, 0.721, 0.703, 0.708, 0.715, 0.700, 0.706])
    b = np.array([0.704, 0.707, 0.690, 0.711, 0.703, 0.701, 0.709, 0.702, 0.699])
    r = paired_test(a, b)
    d = a - b
    exact = stats.permutation_test(
        (d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert r.p_value == pytest.approx(exact.pvalue)
    assert (r.diff_ci_low, r.diff_ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert r.diff_mean == pytest.approx(d.mean()) and r.diff_sd == pytest.approx(d.std(ddof=1))
    assert (r.wins, r.ties, r.losses) == (6, 1, 2) and "exact" in r.test and "2^9" in r.test
    big = paired_test(np.ones(20), np.zeros(20))  # above the exact limit: Monte-Carlo, seeded
    assert (
        "random sign flips" in big.test
        and big.p_value < 1e-3
        and big.p_value == paired_test(np.ones(20), np.zeros(20)).p_value
    )


def test_holm_and_verdicts():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.02, math.nan, 0.5])
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)
    assert verdict(0.01, 0.01) == BETTER and verdict(-0.01, 0.01) == WORSE
    assert (
        verdict(0.01, 0.05) == NO_DIFF
        and verdict(0.01, math.nan) == NO_DIFF
        and verdict(0.01, 0.04, alpha=0.01) == NO_DIFF
    )


def test_power_known_answers_and_round_trip():
    # paired t-test, n = 9, alpha 0.05, power 0.8: Cohen's dz = 1.0670 (statsmodels / G*Power)
    assert min_detectable_effect(1.0, 9) == pytest.approx(1.0670, abs=1e-3)
    assert min_detectable_effect(0.5, 9) == pytest.approx(0.5335, abs=1e-3)
    for n in (8, 12, 30):  # the seeds needed for the MDE of n seeds is n
        assert pairs_needed(min_detectable_effect(0.006, n) * 1.0001, 0.006) == n
    assert pairs_needed(1.0, 0.1) == 6  # a huge effect still needs the exact test's 6 pairs at 0.05
    assert min_detectable_effect(0.5, 1) is None and pairs_needed(0.003, 0.0) is None


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
    """Result rows of one simulated leaderboard: a shared per-seed effect (teacher run + student
    init), independent run noise, and a planted effect per teacher choice."""
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
                    "teacher_checkpoints": [{"trajectory": f"t-s{s % 5}", "epoch": 40}],
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
    assert board["epoch:40"]["vs_ref"]["verdict"] == BETTER and board["epoch:20"]["vs_ref"]["verdict"] == WORSE
    assert board["epoch:60"]["vs_ref"]["verdict"] == NO_DIFF
    assert board["epoch:40"]["vs_ref"]["diff_ci_low"] < 0.01 < board["epoch:40"]["vs_ref"]["diff_ci_high"]
    assert board["full"]["vs_ref"] == {"self": True, "ref": "full"}


def test_verdict_rate_under_the_null_stays_near_the_nominal_level():
    """Over many simulated tables without any effect: per comparison, uncorrected p < 0.05 as
    often as the exact test's size (12/256 = 4.7% for n = 8); Holm keeps the per-table rate of any
    'better'/'worse' verdict (family-wise error) at or below 5%."""
    rng = np.random.default_rng(0)
    tables, raw_hits, tests, families_hit = 100, 0, 0, 0  # ~0.1 s per table (statsmodels Holm runs gc.collect)
    for _ in range(tables):
        board = build_leaderboard(_table(rng, 8, {"epoch:10": 0.0, "epoch:20": 0.0, "epoch:30": 0.0}))
        cmp = [b["vs_ref"] for b in board if not b["vs_ref"].get("self")]
        tests += len(cmp)
        raw_hits += sum(c["p_value"] < 0.05 for c in cmp)
        families_hit += any(c["verdict"] != NO_DIFF for c in cmp)
    size = 12 / 256
    assert stats.binomtest(raw_hits, tests, size).pvalue > 0.001, (raw_hits, tests)
    assert families_hit / tables <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / tables), families_hit
