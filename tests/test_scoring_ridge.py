"""Known-answer tests of ``ridge`` (harness/scoring/ridge.py), through ``estimate`` on a ``TensorConvSource``.

Inputs X ~ N(0, I_d) (d = 16 coordinates, shape [1, 16]), features F of the "checkpoints" built from
X; the decoder fits on training rows and reports on other (validation) rows, as the runner lays them
out. Analytic values: a diagonal channel F = X + s Z has I(X;F) = d/2 log(1 + 1/s^2), and the ridge
i_x (sum of per-coordinate Gaussian values) matches it up to the fit's small downward bias; for a
mixing channel F = X M + s Z, I(X;F) = 1/2 log det(I + M M^T / s^2), of which i_x is a lower bound
(Hadamard's inequality, independent input coordinates).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from harness.config import ScoringConfig
from harness.config_loading import load_config
from harness.experiment import open_store
from harness.scoring import CheckpointFeatures, ScoringData, ScoringError, TensorConvSource, build_estimator
from harness.scoring.replicates import standard_error
from harness.scoring.ridge import RidgeEstimator, RidgeSettings, fit_decoder, split_rows, standardized_targets
from harness.scoring.runner import run_scoring
from harness.scoring.scores_file import ScoresError
from harness.scoring.teacher_picks import read_selected
from harness.teacher_choices import ResolveContext, TeacherRef, resolve_teacher_choice
from tests import test_scoring_runner as runner_tests

D_IN = 16
QUICKSTART, TRAJ, overrides = runner_tests.QUICKSTART, runner_tests.TRAJ, runner_tests.overrides
trained, storage = runner_tests.trained, runner_tests.storage  # its tiny 6-checkpoint trajectory (fixtures)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _inputs(m: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(m + n, 1, D_IN, generator=_gen(seed))


def _estimate(feats: list[torch.Tensor], x: torch.Tensor, m: int, folds: int = 5, settings=None) -> list:
    """``ridge`` on K feature sets [M + N, D] of the rows ``x`` (first ``m`` = training rows)."""
    n = len(x) - m
    data = ScoringData(x[m:], torch.zeros(n), 2, folds=torch.arange(n) % folds, train_x=x[:m])
    ckpts = [CheckpointFeatures(k, torch.zeros(n, 2), torch.zeros(n, 1)) for k in range(len(feats))]
    conv = TensorConvSource([f.reshape(len(x), -1, 1).float() for f in feats])  # [K, rows, C, L = 1]
    est = RidgeEstimator(settings or RidgeSettings(train_samples=m))
    return est.estimate(ckpts, data, conv)


def _channel(x: torch.Tensor, s: float, seed: int = 1, mix: torch.Tensor | None = None) -> torch.Tensor:
    flat = x.reshape(len(x), -1)
    return (flat if mix is None else flat @ mix) + s * torch.randn(flat.shape, generator=_gen(seed))


@pytest.mark.parametrize("s", [0.5, 1.0])
def test_diagonal_gaussian_channel_matches_analytic(s: float) -> None:
    x = _inputs(2000, 1000)
    r = _estimate([_channel(x, s)], x, 2000)[0]
    truth = D_IN / 2 * math.log(1 + 1 / s**2)
    assert r.values["i_x"] == pytest.approx(truth, rel=0.04)
    assert r.values["mse"] == pytest.approx(s**2 / (1 + s**2), rel=0.06)  # the MMSE of a standardized input
    assert r.values["neg_mse"] == -r.values["mse"] and r.values["converged"] == 1.0 and r.values["n_fit"] == 1600


def test_independent_features_carry_nothing() -> None:
    x = _inputs(1000, 1000)
    noise = torch.randn(2000, 64, generator=_gen(5))
    r = _estimate([noise], x, 1000)[0]
    assert 0.0 <= r.values["i_x"] <= 0.05 and r.values["mse"] >= 0.97  # 1 = the pool mean (eval variance 0.987 here)
    assert r.values["penalty"] == 100.0  # the strongest shrinkage wins on held-out rows


def test_mixing_channel_is_bounded_by_log_det() -> None:
    x = _inputs(2000, 1000)
    mix = torch.eye(D_IN) + 0.8 * torch.randn(D_IN, D_IN, generator=_gen(3))
    s = 1.0
    truth = 0.5 * float(torch.logdet(torch.eye(D_IN, dtype=torch.float64) + (mix @ mix.T).double() / s**2))
    r = _estimate([_channel(x, s, mix=mix)], x, 2000)[0]
    assert 0.5 * truth < r.values["i_x"] <= truth * 1.02 + 0.1


def test_more_noise_less_information_in_one_call() -> None:
    x = _inputs(1000, 600)
    sigmas = [0.25, 0.5, 1.0, 2.0, 4.0]
    res = _estimate([_channel(x, s, seed=i) for i, s in enumerate(sigmas)], x, 1000)
    i_x = [r.values["i_x"] for r in res]
    assert all(a > b for a, b in zip(i_x, i_x[1:])), i_x


def test_invertible_map_of_the_features_changes_little() -> None:
    x = _inputs(2000, 1000)
    f = _channel(x, 0.7)
    q, _ = torch.linalg.qr(torch.randn(D_IN, D_IN, generator=_gen(9)))
    a = q @ torch.diag(torch.logspace(-0.5, 0.5, D_IN))  # condition number 10
    plain, mapped = _estimate([f, f @ a], x, 2000)
    assert mapped.values["i_x"] == pytest.approx(plain.values["i_x"], rel=0.02)


def test_bit_identical_runs_and_independent_of_the_other_checkpoints() -> None:
    x = _inputs(400, 200)
    f1, f2 = _channel(x, 0.5), _channel(x, 2.0, seed=2)
    a, b = _estimate([f1, f2], x, 400), _estimate([f1, f2], x, 400)
    alone = _estimate([f2], x, 400)
    assert [r.values for r in a] == [r.values for r in b] and [r.replicates for r in a] == [r.replicates for r in b]
    assert alone[0].values == a[1].values and alone[0].replicates == a[1].replicates


def test_replicates_and_their_error_shrink_with_more_rows() -> None:
    se = []
    for n in (200, 3200):
        x = _inputs(800, n, seed=n)
        r = _estimate([_channel(x, 1.0, seed=n)], x, 800, folds=5)[0]
        assert set(r.replicates) == {"i_x", "mse", "neg_mse"}  # diagnostics carry no error bar
        assert [len(r.replicates["i_x"]), len(r.replicates["i_x"][0])] == [2, 5]  # decoder seeds x folds
        reps = r.replicates["mse"]  # a mean over rows: its pseudo-values are the fold means
        assert sum(map(sum, reps)) / 10 == pytest.approx(r.values["mse"])
        r = _estimate([_channel(x, 1.0, seed=n)], x, 800, folds=5, settings=RidgeSettings(800, seeds=1))[0]
        se.append(standard_error(r.replicates["i_x"]))
    assert 0 < se[1] < se[0] / 2


@pytest.mark.parametrize("d", [3, 200])  # few targets: predictions through the weights; many: the kernel
def test_dual_solution_equals_the_primal_formula(d: int) -> None:
    """Fewer fit rows than features: the n x n solve gives the D x D ridge solution."""
    g = _gen(11)
    phi, y = torch.randn(100, 150, generator=g), torch.randn(100, d, generator=g).double()
    fit, hold, ev = torch.arange(60), torch.arange(60, 80), torch.arange(80, 100)
    res = fit_decoder(phi, y, fit, hold, ev, [0.1])
    a = phi[fit].double() - phi[fit].double().mean(0)
    lam = 0.1 * float((a * a).sum()) / a.shape[1]  # penalty x mean eigenvalue x n
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(150, dtype=torch.float64), a.T @ y[fit])
    expected = (phi[ev].double() - phi[fit].double().mean(0)) @ w - y[ev]
    assert torch.allclose(res.residual, expected, atol=1e-4) and res.penalty == 0.1


def test_rows_targets_settings_and_errors() -> None:
    s = RidgeSettings(train_samples=100, holdout_fraction=0.2, seed=3)
    fit, hold = split_rows(300, s)
    assert len(fit) == 80 and len(hold) == 20 and not set(fit.tolist()) & set(hold.tolist())
    assert torch.equal(split_rows(300, s)[0], fit) and not torch.equal(
        split_rows(300, RidgeSettings(100, seed=4))[0], fit
    )
    x = torch.randn(50, 1, 4)
    x[:, 0, 2] = 7.0  # a constant coordinate is dropped
    y = standardized_targets(x, torch.arange(40))
    assert y.shape == (50, 3) and torch.allclose(y[:40].mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    sc = ScoringConfig()
    sc.seed, sc.ridge.train_samples, sc.ridge.penalties = 2, 500, [0.01, 1.0]
    est = build_estimator("ridge", sc)
    assert est.params() == {
        "train_samples": 500,
        "holdout_fraction": 0.2,
        "penalties": [0.01, 1.0],
        "seed": 2,
        "seeds": 2,
    }
    assert est.x_key == est.plane_x_key == "i_x" and est.needs_conv and est.needs_train_rows
    data = ScoringData(x[40:], torch.zeros(10), 2, train_x=x[:40])
    feats = [CheckpointFeatures(0, torch.zeros(10, 2), torch.zeros(10, 1))]
    with pytest.raises(ScoringError, match="last conv stage"):
        est.estimate(feats, data, None)
    with pytest.raises(ScoringError, match="training-split rows"):
        est.estimate(feats, ScoringData(x[40:], torch.zeros(10), 2), TensorConvSource(torch.zeros(1, 10, 2, 1)))
    r = est.estimate(feats, data, TensorConvSource(torch.zeros(1, 50, 2, 1)))[0]  # constant features: the mean
    assert r.values["i_x"] == 0.0 and r.values["penalty"] == 1.0


def test_default_estimators_select_paper_from_ridge_without_training_a_decoder(storage: Path) -> None:
    """The default ``scoring.estimators`` (no recon): ``selected:paper`` is ridge I(X;F) + accuracy."""
    defaults = [o for o in overrides(storage) if not o.startswith("scoring.estimators=")]
    cfg = load_config(QUICKSTART, defaults)
    assert cfg.scoring.estimators == ["ridge", "accuracy", "ce_bound", "kde", "binning"]
    run_scoring(cfg)
    store = open_store(cfg)
    scores = json.loads((store.scores_dir / f"{TRAJ}.json").read_text())
    assert "recon" not in scores["estimators"] and "paper_recon" not in scores["selected"]
    assert scores["data"]["train_rows"] == 400  # ridge's rows only (200 x 2 decoders): no recon pool
    paper = scores["selected"]["paper"]
    score = {c["epoch"]: c["normalized"]["paper"] for c in scores["checkpoints"]}
    assert paper["epoch"] == max(score, key=lambda e: (round(score[e]["score"], 9), -e))
    assert all(c["raw"]["ridge"]["i_x"] > 0 and c["raw"]["ridge"]["i_x_se"] > 0 for c in scores["checkpoints"])
    assert max(s["x_se"] for s in score.values()) > 0  # the bootstrap resamples ridge's replicates
    ctx = ResolveContext(store=store, trajectory=TRAJ, siblings=[TRAJ], epochs=6)
    assert resolve_teacher_choice("selected:paper", ctx) == [TeacherRef(TRAJ, paper["epoch"])]
    assert 0 < paper["confidence"] <= 1 and sum(scores["selection_confidence"]["paper"].values()) == pytest.approx(1)
    with pytest.raises(ScoresError, match=r"'paper_recon' was not computed.*\['accuracy', 'recon'\]"):
        read_selected(store, TRAJ, "paper_recon")


def test_each_decoder_fits_its_own_rows_so_their_noise_is_in_the_error_bar() -> None:
    """Decoders of one checkpoint draw different fit rows; the replicates keep one row per decoder,
    so the SE counts how much the estimate moves with the fit rows, not only the validation folds."""
    s = RidgeSettings(train_samples=60, seeds=3)
    rows = [set(split_rows(300, s, r)[0].tolist()) for r in range(3)]
    assert rows[0] != rows[1] and rows[1] != rows[2]
    x = _inputs(300, 400, seed=7)
    r = _estimate([_channel(x, 1.0, seed=7)], x, 300, settings=s)[0]
    per_decoder = [sum(row) / len(row) for row in r.replicates["i_x"]]  # ~ each decoder's value (jackknife)
    assert len(per_decoder) == 3 and max(per_decoder) - min(per_decoder) > 1e-3
    assert min(per_decoder) - 0.5 < r.values["i_x"] < max(per_decoder) + 0.5
    one = _estimate([_channel(x, 1.0, seed=7)], x, 300, settings=RidgeSettings(train_samples=60, seeds=1))[0]
    assert standard_error(r.replicates["i_x"]) > 0 and standard_error(one.replicates["i_x"]) > 0
