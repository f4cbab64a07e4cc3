"""A selector's cost is what its stored estimates cost, whatever was re-scored later (issue 20,
point 6): score a tiny real trajectory, re-score with only ``kde`` changed, compare."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from harness.config_loading import load_config
from harness.experiment import open_store
from harness.report.selectors import evaluate_selectors, selector_cost_s
from harness.scoring.runner import score_trajectory
from harness.scoring.scores_file import estimate_costs, read_scores, selector_estimators, write_scores
from harness.teachers import train_trajectory
from tests.helpers import QUICKSTART, private_copy, tiny_overrides
from tests.synthetic_results import result_row

TRAJ = "cnn1d_tiny-mnist1d-s0"
SETUP = {
    "teacher.archs": "[cnn1d_tiny]",
    "teacher.seeds": "[0]",
    "teacher.epochs": 3,
    "teacher.checkpoint_every": 1,
    "scoring.estimators": "[recon,accuracy,kde]",
    "scoring.num_samples": 80,
    "scoring.recon.max_epochs": 2,
    "scoring.recon.patience": 1,
    "scoring.recon.train_samples": 100,
    "scoring.recon.seeds": 1,
    "scoring.folds": 2,
    "scoring.bootstrap": 100,
    "scoring.ensemble_sizes": "[2]",
}


def config(storage: Path, **extra: object):
    return load_config(QUICKSTART, tiny_overrides(storage, **{**SETUP, **extra}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished 3-checkpoint trajectory (trained once per module)."""
    storage = tmp_path_factory.mktemp("cost") / "runs"
    train_trajectory(config(storage), "cnn1d_tiny", 0)
    return storage


@pytest.fixture
def storage(trained: Path, tmp_path: Path) -> Path:
    return private_copy(trained, tmp_path)


def stored_sum(scores: dict, keys: list[str]) -> float:
    return sum(c[k] for c in estimate_costs(scores).values() for k in keys)


def latest_run_cost(scores: dict, selector: str) -> float:
    """What the cost was before issue 20: the latest run's timings only."""
    t = scores["timings"]
    return sum(t["estimators_s"][e] for e in selector_estimators(scores, selector)) + t["features_s"] + t["load_s"]


def ground_truth_rows(epochs: list[int]) -> list[dict]:
    """Two students per checkpoint of TRAJ (the report's ground truth; the values do not matter here)."""
    return [result_row(f"epoch:{e}", s, 0, [(TRAJ, e)], 0.7 + 0.01 * e + 0.001 * s) for e in epochs for s in (0, 1)]


def test_a_rescore_that_reuses_the_papers_estimates_leaves_its_cost_unchanged(storage: Path) -> None:
    cfg = config(storage)
    store = open_store(cfg)
    score_trajectory(cfg, store, TRAJ)
    first = read_scores(store, TRAJ)
    costs = estimate_costs(first)
    assert sorted(costs) == [1, 2, 3] and all(
        set(c) == {"features", "recon", "accuracy", "kde"} for c in costs.values()
    )
    t = first["timings"]
    for est, seconds in t["estimators_s"].items():  # the run's time, split among its checkpoints
        assert stored_sum(first, [est]) == pytest.approx(seconds, abs=1e-3)
    assert stored_sum(first, ["features"]) == pytest.approx(t["features_s"] + t["load_s"], abs=1e-3)
    paper = selector_cost_s(first, "paper_recon")
    assert paper == pytest.approx(stored_sum(first, ["features", "recon", "accuracy"]))
    assert paper == pytest.approx(latest_run_cost(first, "paper_recon"), abs=1e-3)  # nothing reused: the same number

    cfg2 = config(storage, **{"scoring.kde_noise_var": 0.5})
    score_trajectory(cfg2, store, TRAJ)
    again = read_scores(store, TRAJ)
    t2 = again["timings"]
    assert t2["estimator_checkpoints_scored"] == {"recon": 0, "accuracy": 0, "kde": 3}
    assert t2["estimators_s"]["recon"] == 0.0  # the latest run did not train a decoder ...
    assert selector_cost_s(again, "paper_recon") == paper  # ... but the paper's estimates cost what they did
    assert latest_run_cost(again, "paper_recon") < paper  # what the cost used to read after a kde-only change
    for e, c in estimate_costs(again).items():  # reused: carried forward; kde: this run's
        assert {k: c[k] for k in ("features", "recon", "accuracy")} == {
            k: costs[e][k] for k in ("features", "recon", "accuracy")
        }
    assert stored_sum(again, ["kde"]) == pytest.approx(t2["estimators_s"]["kde"], abs=1e-3)
    assert [c["kde"] for c in estimate_costs(again).values()] != [c["kde"] for c in costs.values()]
    for sel in again["selectors"]:  # every selector: the feature pass plus its own estimators' stored costs
        assert selector_cost_s(again, sel) == pytest.approx(
            stored_sum(again, ["features", *selector_estimators(again, sel)])
        )
    (group,) = evaluate_selectors(ground_truth_rows([1, 2, 3]), {TRAJ: again})["groups"].values()
    row = {r["selector"]: r for r in group["rows"]}["paper_recon"]
    assert row["cost_s"] == paper and row["cost_latest_run"] == 0


def test_a_file_without_stored_costs_falls_back_to_the_latest_run_and_says_so(storage: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="harness")
    cfg = config(storage)
    store = open_store(cfg)
    score_trajectory(cfg, store, TRAJ)
    old = read_scores(store, TRAJ)
    for c in old["checkpoints"]:  # as written before per-checkpoint costs were recorded
        del c["cost_s"]
    write_scores(store, TRAJ, old)
    old = read_scores(store, TRAJ)  # the same schema: still read
    assert estimate_costs(old) == {}
    assert selector_cost_s(old, "paper_recon") == pytest.approx(latest_run_cost(old, "paper_recon"))
    assert "no per-checkpoint costs stored" in caplog.text
    (group,) = evaluate_selectors(ground_truth_rows([1, 2, 3]), {TRAJ: old})["groups"].values()
    row = {r["selector"]: r for r in group["rows"]}["paper_recon"]
    assert row["cost_latest_run"] == 1

    score_trajectory(config(storage, **{"scoring.kde_noise_var": 0.5}), store, TRAJ)
    mixed = read_scores(store, TRAJ)  # reused estimates without a cost stay without one: no made-up number
    assert all(set(c) == {"features", "kde"} for c in estimate_costs(mixed).values())
    assert selector_cost_s(mixed, "kde") == pytest.approx(stored_sum(mixed, ["features", "kde"]))
    assert selector_cost_s(mixed, "paper_recon") == pytest.approx(latest_run_cost(mixed, "paper_recon"))
