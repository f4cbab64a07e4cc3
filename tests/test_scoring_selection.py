"""Normalization, selectors, Algorithm 1 and the ensemble pick (pure functions, no models)."""

from __future__ import annotations

import json
import math

import pytest

from harness.scoring import SELECTORS, list_normalizations, normalize
from harness.scoring.scores_file import (
    SCORES_SCHEMA_VERSION,
    Pick,
    ScoresError,
    checkpoint_epochs,
    checkpoint_shas,
    checkpoints,
    has_scores,
    pick_of,
    picks,
    proxy_entries,
    read_all_scores,
    read_scores,
    scored_trajectories,
    scores_path,
    scoring_timings,
    selector_estimators,
    selector_score_by_epoch,
    write_scores,
)
from harness.scoring.selection import (
    available_selectors,
    is_degenerate,
    select_ensemble,
    select_single,
    selector_scores,
)
from harness.scoring.teacher_picks import read_selected, read_selected_ensemble
from harness.store import CheckpointStore, StoreError


def test_normalizations() -> None:
    assert set(list_normalizations()) >= {"minmax", "none", "rank", "zscore"}  # each: tests/test_registries.py
    assert normalize([1.0, 3.0, 2.0]) == [0.0, 1.0, 0.5]
    assert normalize([5.0, 5.0, 5.0]) == [0.0, 0.0, 0.0]  # a constant term does not vote
    z = normalize([1.0, 2.0, 3.0], "zscore")
    assert sum(z) == pytest.approx(0.0) and z[2] == pytest.approx(math.sqrt(1.5))
    assert normalize([10.0, 30.0, 20.0, 20.0], "rank") == [0.0, 1.0, 0.5, 0.5]
    assert normalize([2.0, -1.0], "none") == [2.0, -1.0]
    out = normalize([1.0, math.nan, 3.0])
    assert out[0] == 0.0 and math.isnan(out[1]) and out[2] == 1.0
    with pytest.raises(KeyError, match="known: minmax"):
        normalize([1.0], "softmax")


def _raw(recon_loss: list[float], acc: list[float]) -> list[dict]:
    """Per checkpoint: recon's loss, a ridge i_x that falls with it (an affine map), the accuracy."""
    return [
        {"recon": {"neg_loss": -loss}, "ridge": {"i_x": 30.0 - 10.0 * loss}, "accuracy": {"accuracy": a}}
        for loss, a in zip(recon_loss, acc)
    ]


@pytest.mark.parametrize("selector", ["paper", "paper_recon"])
def test_paper_selector_is_weighted_sum_of_minmax_terms(selector: str) -> None:
    raw = _raw([0.50, 0.40, 0.45, 0.60], [0.60, 0.80, 0.95, 0.96])
    s = selector_scores(raw, SELECTORS[selector])
    assert s["x"] == pytest.approx([0.5, 1.0, 0.75, 0.0])  # lower loss / higher i_x = more I(X;F)
    assert s["y"] == pytest.approx([0.0, 0.2 / 0.36, 0.35 / 0.36, 1.0])
    assert s["score"] == pytest.approx([a + b for a, b in zip(s["x"], s["y"])])
    assert select_single([10, 20, 30, 40], s["score"]) == 30
    heavy_y = selector_scores(raw, SELECTORS[selector], x_weight=0.0, y_weight=1.0)
    assert select_single([10, 20, 30, 40], heavy_y["score"]) == 40
    only_acc = selector_scores(raw, SELECTORS["accuracy"], x_weight=5.0)  # single term: weights unused
    assert only_acc["score"] == only_acc["y"] and "x" not in only_acc


def test_single_pick_ties_go_to_the_earlier_epoch_and_nan_loses() -> None:
    assert select_single([10, 20, 30], [1.0, 2.0, 2.0]) == 20
    assert select_single([10, 20, 30], [1.0, 2.0, 2.0 + 1e-12]) == 20  # equal to 9 decimals
    assert select_single([10, 20, 30], [math.nan, 0.0, -1.0]) == 20
    assert is_degenerate([0.0, 0.0, 0.0]) and not is_degenerate([0.0, 1.0])
    with pytest.raises(ValueError):
        select_single([], [])


def test_ensemble_pick_respects_gap_and_relaxes_it_when_needed() -> None:
    epochs = [10, 20, 30, 40, 50, 60, 70, 80]
    scores = [0.1, 0.3, 0.2, 0.9, 1.0, 0.95, 0.5, 0.8]
    # by score: 50, 60, 40, 80, 70, 20, 30, 10; members must lie >= 16 epochs apart
    assert select_ensemble(epochs, scores, 2, min_gap=16) == ([50, 80], 16)
    assert select_ensemble(epochs, scores, 3, min_gap=16) == ([20, 50, 80], 16)
    # four members cannot be 16 apart (10..80 with 20 and 50 and 80 taken): gap halves to 8
    assert select_ensemble(epochs, scores, 4, min_gap=16) == ([40, 50, 60, 80], 8)
    # no gap: plain top-K
    assert select_ensemble(epochs, scores, 3, min_gap=0) == ([40, 50, 60], 0)
    # every member taken exactly once even when K = all checkpoints
    assert select_ensemble(epochs, scores, 8, min_gap=16)[0] == epochs
    with pytest.raises(ValueError, match="cannot pick 9"):
        select_ensemble(epochs, scores, 9, min_gap=0)


def test_ensemble_ties_are_deterministic() -> None:
    epochs = [10, 20, 30, 40]
    assert select_ensemble(epochs, [1.0, 1.0, 1.0, 1.0], 2, min_gap=15) == ([10, 30], 15)
    assert select_ensemble(epochs, [0.0, 1.0, 1.0, 0.0], 2, min_gap=0) == ([20, 30], 0)


def test_selectors_need_their_estimators() -> None:
    assert set(SELECTORS) >= {"paper", "paper_recon", "ce", "kde", "binning", "accuracy", "proxy_small", "proxy"}
    mi = ["paper", "ce", "kde", "binning", "accuracy"]
    assert available_selectors(["ridge", "accuracy", "ce_bound", "kde", "binning"]) == mi  # proxies: when asked
    assert available_selectors(["recon", "accuracy", "ce_bound", "kde", "binning"]) == [
        "paper_recon",
        "kde",
        "binning",
        "accuracy",
    ]
    assert available_selectors(["ridge", "recon", "accuracy"]) == ["paper", "paper_recon", "accuracy"]
    assert [s.name for s in SELECTORS.values() if s.kind == "proxy"] == ["proxy_small", "proxy", "proxy_large"]
    assert available_selectors(["accuracy", "kde"]) == ["kde", "accuracy"]
    assert available_selectors(["recon"]) == [] and available_selectors(["ridge"]) == []
    assert SELECTORS["paper"].to_json()["x"] == "ridge.i_x" and SELECTORS["ce"].to_json()["x"] == "ridge.i_x"
    assert SELECTORS["paper_recon"].to_json()["x"] == "recon.neg_loss"
    assert SELECTORS["paper"].to_json()["y"] == SELECTORS["paper_recon"].to_json()["y"] == "accuracy.accuracy"


def test_readers_say_to_run_scoring_first(tmp_path) -> None:
    store = CheckpointStore(tmp_path, "exp")
    for call in (lambda: read_selected(store, "t-s0", "paper"), lambda: read_selected_ensemble(store, "t-s0", 2)):
        with pytest.raises(ScoresError, match=r"run `ckd score CONFIG` first") as info:
            call()
        assert isinstance(info.value, ValueError) and isinstance(info.value, StoreError)
        assert "t-s0" in str(info.value)
    store.scores_dir.mkdir(parents=True)
    (store.scores_dir / "t-s0.json").write_text("{not json")
    with pytest.raises(ScoresError, match="not valid JSON"):
        read_selected(store, "t-s0", "paper")
    (store.scores_dir / "t-s0.json").write_text(json.dumps({"schema_version": 0}))
    with pytest.raises(ScoresError, match="schema"):
        read_selected(store, "t-s0", "paper")


def test_scores_file_lists_reads_all_and_its_accessors_read_leniently(tmp_path) -> None:
    store = CheckpointStore(tmp_path, "exp")
    assert scored_trajectories(store) == [] and read_all_scores(store) == {}  # no scores folder yet
    scores = {
        "schema_version": SCORES_SCHEMA_VERSION,
        "selected": {"paper": {"epoch": 3, "degenerate": False, "unstable": True}, "odd": None},
        "selectors": {"paper": {"estimators": ["accuracy", "recon"]}},
        "checkpoints": [
            {"epoch": 1, "sha256": "a", "normalized": {}},
            {"epoch": 3, "sha256": "b", "normalized": {"paper": {"score": 0.5}}},
        ],
    }
    path = write_scores(store, "t-s1", scores)
    (store.scores_dir / "t-s0.json").write_text("{half written")
    assert path == scores_path(store, "t-s1") and has_scores(store, "t-s1") and read_scores(store, "t-s1") == scores
    assert scored_trajectories(store) == ["t-s0", "t-s1"] and read_all_scores(store) == {"t-s1": scores}
    assert picks(scores) == {"paper": Pick(3, degenerate=False, unstable=True)} and pick_of(scores, "paper").usable
    assert not Pick(2, degenerate=True).usable and Pick(2, degenerate=True, fallback="accuracy").usable
    assert pick_of(None, "paper") is None and picks({"selected": []}) == {}
    assert checkpoint_shas(scores) == {1: "a", 3: "b"} and checkpoint_epochs(scores) == [1, 3]
    assert [c.epoch for c in checkpoints(scores)] == [1, 3] and checkpoints(scores)[1].raw == {}
    assert selector_score_by_epoch(scores, "paper") == {3: 0.5}
    assert selector_estimators(scores, "paper") == ["accuracy", "recon"] and selector_estimators(scores, "ce") is None
    assert proxy_entries(scores) == {} and scoring_timings(scores) == {} and scoring_timings("not a file") == {}
