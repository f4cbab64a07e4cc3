"""Error bars and selection stability (harness/scoring/replicates.py, selection.selection_stability):
known answers for the standard errors, planted effects for the selection confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.scoring import CheckpointFeatures, ScoringData, build_estimator
from harness.scoring.replicates import jackknife_replicates, standard_error
from harness.scoring.sample import assign_folds
from harness.scoring.selection import is_unstable, selection_stability


def test_standard_error_of_a_two_way_design() -> None:
    seed_effect = np.array([-1.0, 0.0, 1.0])[:, None] * np.ones((3, 4))
    assert standard_error(seed_effect) == pytest.approx(1.0 / math.sqrt(3))  # sd of seed means 1
    fold_effect = np.ones((1, 4)) * np.array([1.0, 2.0, 3.0, 4.0])
    assert standard_error(fold_effect) == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert standard_error(np.ones((3, 5))) == 0.0
    assert math.isnan(standard_error([[1.0]])) and math.isnan(standard_error([[math.nan, 1.0]]))


def test_jackknife_of_a_mean_gives_the_fold_means() -> None:
    values = torch.arange(20, dtype=torch.float64) ** 1.5
    folds = assign_folds(20, 4, seed=0)
    assert torch.bincount(folds).tolist() == [5, 5, 5, 5]
    full = {"m": float(values.mean())}
    left = [{"m": float(values[folds != f].mean())} for f in range(4)]
    reps = jackknife_replicates(full, left, ["m"])["m"]
    assert reps == pytest.approx([float(values[folds == f].mean()) for f in range(4)])


def test_accuracy_error_bar_matches_the_binomial_standard_error() -> None:
    """Known answer: an accuracy of p on N samples has SE sqrt(p (1 - p) / N)."""
    n, p = 4000, 0.8
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    correct = torch.rand(n, generator=g) < p
    pred = torch.where(correct, y, (y + 1) % 3)
    logits = torch.nn.functional.one_hot(pred, 3).float() * 5
    data = ScoringData(x=torch.zeros(n, 1), y=y, num_classes=3, folds=assign_folds(n, 10, seed=1))
    est = build_estimator("accuracy", None).estimate([CheckpointFeatures(1, logits, logits)], data)[0]
    acc = est.values["accuracy"]
    assert [len(est.replicates["accuracy"]), len(est.replicates["accuracy"][0])] == [1, 10]
    assert standard_error(est.replicates["accuracy"]) == pytest.approx(math.sqrt(acc * (1 - acc) / n), rel=0.35)


def _raw(values: np.ndarray) -> list[dict]:
    return [{"accuracy": {"accuracy": float(v)}} for v in values]


def _reps(cells: np.ndarray) -> list[dict]:
    """``cells`` [K, S, F] -> per-checkpoint replicate dicts."""
    return [{"accuracy": {"accuracy": c.tolist()}} for c in cells]


def test_clear_winner_is_confident_and_a_near_tie_is_unstable() -> None:
    rng = np.random.default_rng(0)
    epochs = [10, 20, 30]
    noise = rng.normal(0, 0.01, size=(3, 1, 8))
    clear = np.array([0.80, 0.90, 0.85])[:, None, None] + noise
    out = selection_stability(epochs, _raw(clear.mean(axis=(1, 2))), _reps(clear), ["accuracy"], draws=2000, seed=0)
    assert out["accuracy"]["confidence"]["20"] > 0.99 and not is_unstable(out["accuracy"]["confidence"]["20"])
    a = rng.normal(0, 0.05, size=(1, 8))
    a -= a.mean()
    tie = np.array([0.80, 0.9, 0.9])[:, None, None] + np.stack([0 * a, a, -a])  # 20 and 30: equal means
    conf = selection_stability(epochs, _raw(tie.mean(axis=(1, 2))), _reps(tie), ["accuracy"], draws=2000, seed=0)[
        "accuracy"
    ]["confidence"]
    assert conf["10"] < 0.01 and 0.3 < conf["20"] < 0.7 and 0.3 < conf["30"] < 0.7  # a coin flip
    assert sum(conf.values()) == pytest.approx(1.0, abs=1e-3)
    assert is_unstable(0.49) and not is_unstable(0.5)


def test_shared_fold_noise_cancels_in_the_paired_resampling() -> None:
    """Large noise common to every checkpoint (the same validation rows) does not blur a small,
    constant difference: per-estimate error bars are wide, the pick is still certain."""
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 0.2, size=(1, 1, 10))
    cells = np.array([0.50, 0.52, 0.51])[:, None, None] + shared
    point = cells.mean(axis=(1, 2))
    assert standard_error(cells[1]) > 0.02  # an error bar wider than the differences (0.01-0.02)
    out = selection_stability([1, 2, 3], _raw(point), _reps(cells), ["accuracy"], draws=500, seed=0)
    assert out["accuracy"]["confidence"]["2"] == 1.0
    assert out["accuracy"]["score_se"][1] == pytest.approx(0.0, abs=1e-9)


def test_row_wise_minmax_equals_the_per_row_normalization_bit_for_bit() -> None:
    """The bootstrap normalizes 1000 draws per term as arrays; every element must be what
    ``normalization.minmax`` gives its row (non-finite entries, flat rows, tiny and huge scales)."""
    import numpy as np

    from harness.scoring.normalization import normalize
    from harness.scoring.replicates import normalize_rows

    rng = np.random.default_rng(0)
    for scale in (1e-14, 1.0, 1e6):
        v = rng.normal(size=(200, 8)) * scale
        v[rng.random(v.shape) < 0.1] = np.nan
        v[rng.random(v.shape) < 0.05] = np.inf
        v[3], v[4], v[5] = 5.0, np.nan, v[5, 0]
        expected = np.array([normalize(list(row), "minmax") for row in v])
        assert np.array_equal(normalize_rows(v, "minmax"), expected, equal_nan=True)
