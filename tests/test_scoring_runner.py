"""End to end: score a tiny real trajectory (``harness.teachers.train_trajectory``), re-run,
resolve the teacher choices ``selected:*`` / ``selected_ensemble:K``, information plane."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from harness.config import ConfigError
from harness.config_loading import load_config
from harness.experiment import open_store
from harness.scoring import ScoringError, features
from harness.scoring.freshness import scores_fresh
from harness.scoring.plane import information_plane
from harness.scoring.runner import run_scoring, score_trajectory
from harness.scoring.scores_file import ScoresError, write_scores
from harness.scoring.teacher_picks import read_selected, read_selected_ensemble
from harness.teacher_choices import ResolveContext, TeacherRef, resolve_teacher_choice
from harness.teachers import train_trajectory
from tests.helpers import private_copy

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
TRAJ = "cnn1d_tiny-mnist1d-s0"


def overrides(storage: Path, **extra: object) -> list[str]:
    """The quickstart config shrunk to seconds: tiny data, a 6-epoch teacher, few decoder epochs."""
    base = {
        "storage": str(storage),
        "data.num_samples": 4000,  # 1000 train pool -> 100 validation samples
        "data.eval_batch_size": 512,
        "teacher.archs": "[cnn1d_tiny]",
        "teacher.seeds": "[0]",
        "teacher.epochs": 6,
        "teacher.checkpoint_every": 1,
        "tracking.mode": "disabled",
        "threads": 1,
        "scoring.num_samples": 80,
        # the default estimators plus recon (the paper's decoder, selector paper_recon), so both run here
        "scoring.estimators": "[ridge,recon,accuracy,ce_bound,kde,binning]",
        "scoring.ridge.train_samples": 200,
        "scoring.ridge.seeds": 2,
        "scoring.recon.max_epochs": 4,
        "scoring.recon.patience": 2,
        "scoring.recon.train_samples": 200,
        "scoring.recon.seeds": 2,
        "scoring.folds": 4,
        "scoring.bootstrap": 200,
        "scoring.ensemble_sizes": "[2,3]",
        "scoring.min_gap_fraction": 0.3,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished 6-checkpoint trajectory (trained once per module)."""
    storage = tmp_path_factory.mktemp("trained") / "runs"
    cfg = load_config(QUICKSTART, overrides(storage))
    train_trajectory(cfg, "cnn1d_tiny", 0)
    return storage


@pytest.fixture
def storage(trained: Path, tmp_path: Path) -> Path:
    return private_copy(trained, tmp_path)


def test_score_writes_schema_and_selections(storage: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="harness")
    cfg = load_config(QUICKSTART, overrides(storage))
    summary = run_scoring(cfg)
    assert f"[score] {TRAJ}: 6 checkpoints, 6 to score" in caplog.text and "selected paper=e" in caplog.text
    assert "(p=" in caplog.text and "recon.neg_loss -0." in caplog.text and "±" in caplog.text  # error bars, confidence
    assert "ridge.i_x " in caplog.text

    path = open_store(cfg).scores_dir / f"{TRAJ}.json"
    scores = json.loads(path.read_text())
    assert scores["schema_version"] == 2 and scores["trajectory"] == TRAJ
    assert scores["data"]["split"] == "val" and scores["data"]["num_samples"] == 80
    assert (
        scores["data"]["train_split"] == "train"
        and scores["data"]["train_rows"] == 400
        and scores["data"]["folds"] == 4
    )  # recon's 200 x 2 seeds, as ridge's 200 x 2 decoders
    seeds = {"ridge": 2, "recon": 2, "accuracy": 1, "ce_bound": 1, "kde": 1, "binning": 1}
    assert scores["replicates"]["seeds"] == seeds
    assert set(scores["estimators"]) == {"ridge", "recon", "accuracy", "ce_bound", "kde", "binning"}
    assert scores["estimators"]["kde"]["params"]["noise_var"] == 0.1
    assert scores["estimators"]["binning"]["params"]["bins"] == 30
    assert set(scores["selectors"]) == {"paper", "paper_recon", "ce", "kde", "binning", "accuracy"}  # (sorted on disk)
    assert (
        scores["selectors"]["paper"]["x"] == "ridge.i_x" and scores["selectors"]["paper_recon"]["x"] == "recon.neg_loss"
    )
    assert (
        scores["proxy"] == {} and scores["timings"]["proxy_s"] >= 0
    )  # proxy selectors train students: only when asked
    epochs = [c["epoch"] for c in scores["checkpoints"]]
    assert epochs == [1, 2, 3, 4, 5, 6]
    for c in scores["checkpoints"]:
        recon = c["raw"]["recon"]
        assert set(recon) >= {
            "loss",
            "neg_loss",
            "mse",
            "i_x",
            "best_epoch",
            "epochs_trained",
            "converged",
            "loss_se",
            "i_x_se",
        }
        assert recon["loss_se"] > 0 and recon["epochs_trained"] <= 4 and 0 <= recon["converged"] <= 1
        assert [len(c["replicates"]["recon"]["loss"]), len(c["replicates"]["recon"]["loss"][0])] == [
            2,
            4,
        ]  # seeds x folds
        ridge = c["raw"]["ridge"]
        assert set(ridge) >= {"i_x", "mse", "neg_mse", "i_x_se", "mse_se", "penalty", "n_fit", "converged", "threads"}
        assert ridge["i_x"] > 0 and ridge["i_x_se"] > 0 and ridge["converged"] == 1.0 and ridge["n_fit"] == 160
        assert 1e-4 <= ridge["penalty"] <= 100.0 and "penalty_se" not in ridge  # the decoders' mean pick
        assert [len(c["replicates"]["ridge"]["i_x"]), len(c["replicates"]["ridge"]["i_x"][0])] == [2, 4]
        assert 0.0 <= c["raw"]["accuracy"]["accuracy"] <= 1.0 and c["raw"]["accuracy"]["accuracy_se"] >= 0
        assert c["raw"]["kde"]["i_y_corrected"] == pytest.approx(
            c["raw"]["kde"]["i_y"] - c["raw"]["kde"]["i_y_shuffled"]
        )
        for sel, norm in c["normalized"].items():
            assert -1e-9 <= norm["score"] <= (1.0 if sel == "accuracy" else 2.0) + 1e-9 and norm["score_se"] >= 0
    for sel, pick in scores["selected"].items():
        assert summary[TRAJ]["selected"][sel] == pick["epoch"] and pick["epoch"] in epochs
        conf = scores["selection_confidence"][sel]
        assert set(conf) == {str(e) for e in epochs} and sum(conf.values()) == pytest.approx(1.0, abs=1e-3)
        assert pick["confidence"] == conf[str(pick["epoch"])] and pick["unstable"] == (pick["confidence"] < 0.5)
        best = max(c["normalized"][sel]["score"] for c in scores["checkpoints"])
        assert pick["score"] == pytest.approx(best)
    ens = scores["selected_ensemble"]
    assert ens["selector"] == "paper" and ens["min_gap_epochs"] == pytest.approx(1.8)
    for k, pick in ens["by_k"].items():
        assert len(pick["epochs"]) == int(k) == len(set(pick["epochs"]))
        gaps = [b - a for a, b in zip(pick["epochs"], pick["epochs"][1:])]
        assert min(gaps) >= pick["gap_epochs"]
    t = scores["timings"]
    assert t["checkpoints_scored"] == 6 and t["shared_pass"] is True and t["total_s"] > 0 and t["per_checkpoint_s"] > 0
    assert set(t["estimators_s"]) == set(scores["estimators"])
    # a selector whose scores all tie (e.g. saturated binning) is reported as a WARNING record
    degenerate = [s for s, v in scores["selected"].items() if v["degenerate"]]
    shaky = [s for s, v in scores["selected"].items() if v["unstable"] and not v["degenerate"]]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == (1 if degenerate else 0) + (1 if shaky else 0)
    assert all(any(s in w and "saturated" in w for w in warned) for s in degenerate)
    assert all(any(s in w and "unstable" in w for w in warned) for s in shaky)
    assert not any(m.startswith("warning") for m in warned)


def test_rerun_reuses_scores_and_rescores_only_what_changed(storage: Path) -> None:
    cfg = load_config(QUICKSTART, overrides(storage))
    run_scoring(cfg)
    path = open_store(cfg).scores_dir / f"{TRAJ}.json"
    first = json.loads(path.read_text())

    run_scoring(cfg)
    again = json.loads(path.read_text())
    assert again["timings"]["checkpoints_scored"] == 0
    assert [c["raw"] for c in again["checkpoints"]] == [c["raw"] for c in first["checkpoints"]]

    cfg2 = load_config(QUICKSTART, overrides(storage, **{"scoring.kde_noise_var": 0.5}))
    run_scoring(cfg2)
    third = json.loads(path.read_text())
    assert third["timings"]["estimator_checkpoints_scored"] == {
        "ridge": 0,
        "recon": 0,
        "accuracy": 0,
        "ce_bound": 0,
        "kde": 6,
        "binning": 0,
    }
    assert [c["replicates"]["recon"] for c in third["checkpoints"]] == [
        c["replicates"]["recon"] for c in first["checkpoints"]
    ]
    assert third["estimators"]["kde"]["params"]["noise_var"] == 0.5
    assert [c["raw"]["recon"] for c in third["checkpoints"]] == [c["raw"]["recon"] for c in first["checkpoints"]]
    assert [c["raw"]["ridge"] for c in third["checkpoints"]] == [c["raw"]["ridge"] for c in first["checkpoints"]]
    assert [c["raw"]["kde"] for c in third["checkpoints"]] != [c["raw"]["kde"] for c in first["checkpoints"]]


def test_stale_scores_are_refused_and_rescored(storage: Path) -> None:
    cfg = load_config(QUICKSTART, overrides(storage))
    store = open_store(cfg)
    run_scoring(cfg)
    path = store.scores_dir / f"{TRAJ}.json"
    scores = json.loads(path.read_text())
    scores["checkpoints"][2]["sha256"] = "0" * 64  # as if epoch 3 had been retrained since
    write_scores(store, TRAJ, scores)  # an honest file (digest sealed) of older checkpoints
    with pytest.raises(ScoresError, match=r"stale .*\[3\].*run `ckd score CONFIG` first"):
        read_selected(store, TRAJ, "paper")
    run_scoring(cfg)
    assert json.loads(path.read_text())["timings"]["checkpoints_scored"] == 1
    read_selected(store, TRAJ, "paper")


def test_scores_fresh_until_a_setting_or_a_checkpoint_changes(storage: Path) -> None:
    cfg = load_config(QUICKSTART, overrides(storage))
    store = open_store(cfg)
    assert not scores_fresh(cfg, TRAJ)  # no scores file yet
    score_trajectory(cfg, store, TRAJ)
    assert scores_fresh(cfg, TRAJ)
    for key, value in [
        ("scoring.normalization", "rank"),
        ("scoring.kde_noise_var", 0.5),  # an estimator parameter
        ("scoring.recon.patience", 3),
        ("scoring.num_samples", 60),  # the scoring sample
        ("scoring.seed", 1),
        ("scoring.x_weight", 2.0),
        ("scoring.ensemble_sizes", "[2]"),
        ("scoring.ensemble_selector", "kde"),
        ("scoring.folds", 5),
        ("scoring.bootstrap", 300),
        ("scoring.degenerate_fallback", "accuracy"),
        ("scoring.kde_shuffles", 2),
        ("scoring.recon.seeds", 1),
        ("scoring.recon.train_samples", 100),
        ("scoring.ridge.train_samples", 150),
        ("scoring.ridge.penalties", "[0.1,1.0]"),
    ]:
        assert not scores_fresh(load_config(QUICKSTART, overrides(storage, **{key: value})), TRAJ), key
    assert scores_fresh(cfg, TRAJ)  # asking changed nothing
    assert not scores_fresh(cfg, "cnn1d_tiny-mnist1d-s9")  # unknown trajectory
    path = store.scores_dir / f"{TRAJ}.json"
    scores = json.loads(path.read_text())
    scores["checkpoints"][0]["sha256"] = "0" * 64  # as if epoch 1 had been retrained since
    path.write_text(json.dumps(scores))
    assert not scores_fresh(cfg, TRAJ)


def test_shared_pass_equals_one_checkpoint_at_a_time(storage: Path) -> None:
    cfg = load_config(QUICKSTART, overrides(storage))
    store = open_store(cfg)
    score_trajectory(cfg, store, TRAJ, shared=False)
    alone = json.loads((store.scores_dir / f"{TRAJ}.json").read_text())
    (store.scores_dir / f"{TRAJ}.json").unlink()
    score_trajectory(cfg, store, TRAJ)
    shared = json.loads((store.scores_dir / f"{TRAJ}.json").read_text())
    assert alone["timings"]["shared_pass"] is False and shared["timings"]["shared_pass"] is True
    assert (
        [c["epoch"] for c in alone["checkpoints"]] == [c["epoch"] for c in shared["checkpoints"]] == [1, 2, 3, 4, 5, 6]
    )
    for a, b in zip(alone["checkpoints"], shared["checkpoints"]):
        for est in a["raw"]:
            if est != "recon":  # same features, same arithmetic
                assert b["raw"][est] == pytest.approx(a["raw"][est], rel=1e-6, abs=1e-9), (a["epoch"], est)
        # recon: the same training path; grouped vs single convolutions round differently and
        # Adam's early sign-like steps amplify that to ~1e-4 relative in the loss
        assert b["raw"]["recon"]["loss"] == pytest.approx(a["raw"]["recon"]["loss"], rel=2e-3)
        assert b["raw"]["recon"]["i_x"] == pytest.approx(a["raw"]["recon"]["i_x"], rel=5e-2)
        assert b["raw"]["recon"]["best_epoch"] == a["raw"]["recon"]["best_epoch"]


def test_conv_stages_recomputed_when_they_do_not_fit_the_cache(storage: Path, monkeypatch) -> None:
    recomputing: list[int] = []

    class CountingSource(features.ModelConvSource):
        def __init__(self, models, x, device) -> None:
            super().__init__(models, x, device)
            recomputing.append(self.num_checkpoints)

    monkeypatch.setattr(features, "ModelConvSource", CountingSource)
    cfg = load_config(QUICKSTART, overrides(storage))
    store = open_store(cfg)
    score_trajectory(cfg, store, TRAJ)
    assert recomputing == []  # the default cache holds the conv stages
    cached = json.loads((store.scores_dir / f"{TRAJ}.json").read_text())
    (store.scores_dir / f"{TRAJ}.json").unlink()
    nocache = load_config(QUICKSTART, overrides(storage, **{"scoring.feature_cache_mb": 0}))
    score_trajectory(nocache, store, TRAJ)  # ModelConvSource: all models per batch
    assert recomputing == [6, 6]  # per conv estimator (ridge, recon) one source feeding all six checkpoints
    recomputed = json.loads((store.scores_dir / f"{TRAJ}.json").read_text())
    assert len(recomputed["checkpoints"]) == len(cached["checkpoints"]) == 6
    for a, b in zip(cached["checkpoints"], recomputed["checkpoints"]):
        assert b["raw"]["recon"]["loss"] == pytest.approx(a["raw"]["recon"]["loss"], rel=2e-3)
        assert b["raw"]["kde"] == a["raw"]["kde"]
        assert b["raw"]["ridge"] == pytest.approx(a["raw"]["ridge"], rel=1e-6)  # conv batches of other sizes


def test_teacher_choices_resolve_from_the_scores_file(storage: Path) -> None:
    cfg = load_config(QUICKSTART, overrides(storage))
    store = open_store(cfg)
    ctx = ResolveContext(store=store, trajectory=TRAJ, siblings=[TRAJ], epochs=6)
    with pytest.raises(ValueError, match=r"run `ckd score CONFIG` first"):
        resolve_teacher_choice("selected:paper", ctx)
    run_scoring(cfg)
    scores = json.loads((store.scores_dir / f"{TRAJ}.json").read_text())
    for sel in ("paper", "kde", "accuracy"):
        assert resolve_teacher_choice(f"selected:{sel}", ctx) == [TeacherRef(TRAJ, scores["selected"][sel]["epoch"])]
    pick = scores["selected_ensemble"]["by_k"]["3"]["epochs"]
    assert resolve_teacher_choice("selected_ensemble:3", ctx) == [TeacherRef(TRAJ, e) for e in pick]
    four = read_selected_ensemble(store, TRAJ, 4)  # not precomputed: same rule on stored scores
    assert len(set(four)) == 4 and four == sorted(four)
    with pytest.raises(ScoresError, match="unknown selector 'nope'"):
        read_selected(store, TRAJ, "nope")
    with pytest.raises(ScoresError, match="cannot pick 7"):
        read_selected_ensemble(store, TRAJ, 7)


def test_selector_without_its_estimators_is_explained(storage: Path) -> None:
    cfg = load_config(QUICKSTART, overrides(storage, **{"scoring.estimators": "[accuracy,kde]"}))
    store = open_store(cfg)
    summary = run_scoring(cfg)
    assert set(summary[TRAJ]["selected"]) == {"kde", "accuracy"}
    assert json.loads((store.scores_dir / f"{TRAJ}.json").read_text())["selected_ensemble"]["selector"] == "kde"
    with pytest.raises(ScoresError, match=r"'paper' was not computed.*\['accuracy', 'ridge'\].*scoring.estimators"):
        read_selected(store, TRAJ, "paper")


def test_information_plane_table(storage: Path) -> None:
    cfg = load_config(QUICKSTART, overrides(storage))
    run_scoring(cfg)
    rows = information_plane(open_store(cfg))
    assert len(rows) == 6 * 6  # selectors x checkpoints
    assert rows == information_plane(open_store(cfg), TRAJ)
    paper = [r for r in rows if r["estimator"] == "paper"]
    assert [r["epoch"] for r in paper] == [1, 2, 3, 4, 5, 6]
    for r in paper:
        assert r["x_estimator"] == "ridge" and r["y_estimator"] == "accuracy"
        assert r["i_x"] > 0 and 0 <= r["i_y"] <= 2.31 and r["x_value"] == r["i_x"] and 0 <= r["y_value"] <= 1
        assert r["i_x_se"] > 0 and r["x_se"] > 0 and r["y_se"] >= 0 and r["i_y_se"] >= 0 and r["score_se"] >= 0
    recon = [r for r in rows if r["estimator"] == "paper_recon"]
    assert all(r["x_estimator"] == "recon" and r["x_value"] < 0 < r["i_x"] for r in recon)
    acc = [r for r in rows if r["estimator"] == "accuracy"]
    assert all(r["i_x"] is None and r["x_estimator"] is None for r in acc)


def test_unfinished_and_convless_trajectories(tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    cfg = load_config(QUICKSTART, overrides(storage))
    assert run_scoring(cfg) == {}  # nothing trained: nothing to do, no error
    mlp = load_config(QUICKSTART, overrides(storage, **{"teacher.archs": "[mlp_small]", "teacher.epochs": 2}))
    train_trajectory(mlp, "mlp_small", 0)
    with pytest.raises(ScoringError, match="need a last conv stage.*mlp_small"):
        run_scoring(mlp)
    no_recon = load_config(
        QUICKSTART,
        overrides(
            storage,
            **{
                "teacher.archs": "[mlp_small]",
                "teacher.epochs": 2,
                "scoring.estimators": "[accuracy,ce_bound,kde,binning]",
            },
        ),
    )
    assert set(run_scoring(no_recon)["mlp_small-mnist1d-s0"]["selected"]) == {"kde", "binning", "accuracy"}


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("scoring.estimators", "[recon,mine]", "unknown estimator 'mine'"),
        ("scoring.estimators", "[]", "at least one estimator"),
        ("scoring.normalization", "softmax", "unknown normalization"),
        ("scoring.ensemble_selector", "best", "unknown selector"),
        ("scoring.min_gap_fraction", 1.5, r"\[0, 1\)"),
        ("scoring.kde_noise_var", 0, "positive"),
        ("scoring.binning_bins", 1, ">= 2"),
        ("scoring.recon.holdout_fraction", 0, r"\(0, 1\)"),
        ("scoring.x_weight", -1, ">= 0"),
        ("scoring.folds", 1, ">= 2"),
        ("scoring.folds", 60, "2 scoring samples per fold"),
        ("scoring.degenerate_fallback", "best", "unknown selector"),
        ("scoring.recon.seeds", 0, ">= 1"),
        ("scoring.kde_shuffles", 0, ">= 1"),
    ],
)
def test_config_validation(tmp_path: Path, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(QUICKSTART, overrides(tmp_path, **{key: value}))


def test_scoring_sample_is_a_fixed_subset_of_the_validation_split(tmp_path: Path) -> None:
    from harness.experiment import load_splits
    from harness.scoring.sample import build_scoring_data

    cfg = load_config(QUICKSTART, overrides(tmp_path / "runs", **{"scoring.num_samples": 50}))
    data = build_scoring_data(cfg)
    val = load_splits(cfg).val
    assert len(data) == 50 and data.info["split"] == "val" and data.info["val_size"] == len(val)
    rows = [int((val.x.flatten(1) == x.flatten()).all(1).nonzero()[0]) for x in data.x]
    assert len(set(rows)) == 50 and all(val.y[r] == y for r, y in zip(rows, data.y))
    again = build_scoring_data(cfg)
    assert (again.x == data.x).all()  # same seed, same sample
    other = build_scoring_data(
        load_config(QUICKSTART, overrides(tmp_path / "runs", **{"scoring.num_samples": 50, "scoring.seed": 1}))
    )
    assert not (other.x == data.x).all()
    everything = build_scoring_data(
        load_config(QUICKSTART, overrides(tmp_path / "runs", **{"scoring.num_samples": 10_000}))
    )
    assert len(everything) == len(val)


def test_degenerate_selector_fails_unless_a_fallback_is_configured(storage: Path) -> None:
    """binning on 80 samples of a 64-wide layer: every sample its own symbol, the same score everywhere."""
    cfg = load_config(QUICKSTART, overrides(storage))
    store = open_store(cfg)
    run_scoring(cfg)
    scores = json.loads((store.scores_dir / f"{TRAJ}.json").read_text())
    assert scores["selected"]["binning"]["degenerate"] and scores["selected"]["binning"]["fallback"] is None
    with pytest.raises(ScoresError, match=r"'binning' is degenerate .*scoring.degenerate_fallback"):
        read_selected(store, TRAJ, "binning")
    with pytest.raises(ScoresError, match="degenerate"):
        read_selected_ensemble(store, TRAJ, 2, selector="binning")
    fallback = load_config(QUICKSTART, overrides(storage, **{"scoring.degenerate_fallback": "accuracy"}))
    assert not scores_fresh(fallback, TRAJ)
    run_scoring(fallback)
    again = json.loads((store.scores_dir / f"{TRAJ}.json").read_text())
    assert again["timings"]["checkpoints_scored"] == 0  # only the selection changed
    assert again["selected"]["binning"]["fallback"] == "accuracy"
    assert read_selected(store, TRAJ, "binning") == again["selected"]["accuracy"]["epoch"]


def test_scoring_sample_folds_and_training_rows(tmp_path: Path) -> None:
    from harness.experiment import load_splits
    from harness.scoring.sample import build_scoring_data

    cfg = load_config(QUICKSTART, overrides(tmp_path / "runs"))
    data = build_scoring_data(cfg)
    assert torch.bincount(data.folds).tolist() == [20, 20, 20, 20]
    train = load_splits(cfg).train_eval
    assert data.train_x.shape[0] == 400  # a pool of train_samples x seeds rows (recon's and ridge's alike)
    first = data.train_x[0].flatten()
    assert bool((train.x.flatten(1) == first).all(1).any())  # rows of the training split
    no_recon = load_config(QUICKSTART, overrides(tmp_path / "runs", **{"scoring.estimators": "[accuracy]"}))
    assert build_scoring_data(no_recon).train_x is None  # nothing trains: no training rows loaded
    ridge = overrides(
        tmp_path / "runs", **{"scoring.estimators": "[ridge,accuracy]", "scoring.ridge.train_samples": 150}
    )
    small = build_scoring_data(load_config(QUICKSTART, ridge)).train_x.flatten(1)
    assert (
        small.shape[0] == 300
    )  # ridge's own need (150 x 2 decoders), a subset of the larger pool (the same draw, cut shorter)
    assert bool((small[:, None, :] == data.train_x.flatten(1)[None]).all(2).any(1).all())
