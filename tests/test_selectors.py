"""Selector evaluation against a planted ground truth: ranks, regret, rho, hits, noise ceiling, cost."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from harness.report.board import board_for
from harness.report.selector_plot import plot_selector_cost
from harness.report.selectors import evaluate_selectors, reliability, render_selectors, split_half
from harness.report.stats import spearman
from harness.scoring.scores_file import read_all_scores, read_scores
from harness.scoring.scores_file import write_scores as seal_scores
from harness.store import CheckpointStore
from tests.synthetic_results import result_row, traj, write_scores

GT = {10: 0.00, 20: 0.03, 30: 0.02, 40: 0.01, 50: 0.015}  # planted; the oracle (best validation) is epoch 20
TIMINGS = {"estimators_s": {"a": 2.0, "b": 3.0}, "features_s": 0.5, "load_s": 0.5, "total_s": 9.0}
SELECTORS = {"good": {"estimators": ["a"]}, "bad": {"estimators": ["a", "b"]}}


def rows(n_traj: int = 3, skip: tuple[int, int] | None = None) -> list[dict]:
    """Every checkpoint of each trajectory taught 2 student seeds (i and i + n_traj), which differ
    by a constant: the two halves rank the checkpoints identically (noise ceiling 1)."""
    out = []
    for s in range(2 * n_traj):
        t = s % n_traj
        for e, g in GT.items():
            if skip != (t, e):
                out.append(result_row(f"epoch:{e}", s, t, [(traj(t), e)], 0.7 + g + (0.001 if s < n_traj else -0.001)))
    return out


def scores(store: CheckpointStore, n_traj: int = 3, unstable_in: int = 0) -> None:
    for t in range(n_traj):
        sel = {
            "good": {"epoch": 20, "unstable": False, "confidence": 0.9},
            "bad": {"epoch": 10, "degenerate": True},
            "mid": {"epoch": 30, "unstable": t == unstable_in, "confidence": 0.4 if t == unstable_in else 0.8},
        }
        write_scores(
            store,
            traj(t),
            list(GT),
            sel,
            {"good": dict(GT), "bad": {e: -g for e, g in GT.items()}, "mid": {e: 1.0 for e in GT}},
            TIMINGS,
            SELECTORS,
        )


def by_selector(result: dict) -> dict[str, dict]:
    (group,) = result["groups"].values()
    return {r["selector"]: r for r in group["rows"]}


def test_known_ranks_regrets_correlations_hits_and_costs(tmp_path):
    store = CheckpointStore(tmp_path, "exp")
    scores(store)
    result = evaluate_selectors(rows(), read_all_scores(store))
    r = by_selector(result)
    good, bad, mid = r["good"], r["bad"], r["mid"]
    assert (good["picks"], good["ranks"], good["regret_pp"], good["rho"]) == (
        "20/20/20",
        "1/1/1",
        pytest.approx(0.0, abs=1e-9),
        pytest.approx(1.0),
    )
    assert (
        good["hit1"][0] == 1.0 and good["hit3"][0] == 1.0 and good["cost_s"] == pytest.approx(3.0)
    )  # a + features + load
    assert (bad["ranks"], bad["regret_pp"], bad["rho"]) == ("5/5/5", pytest.approx(3.0), pytest.approx(-1.0))
    assert bad["hit3"][0] == 0.0 and bad["degenerate"] == 3 and bad["cost_s"] == pytest.approx(6.0)
    assert (mid["ranks"], mid["regret_pp"], mid["hit1"][0], mid["hit3"][0]) == ("2/2/2", pytest.approx(1.0), 0.0, 1.0)
    assert math.isnan(mid["rho"]) and mid["rho_defined"] == 0  # a constant score has no rank correlation
    assert mid["cost_s"] == pytest.approx(9.0) and mid["unstable"] == 1  # no estimator split recorded: total_s
    assert r["last checkpoint (full)"]["ranks"] == "3/3/3" and r["oracle (val)"]["regret_pp"] == pytest.approx(
        0.0, abs=1e-9
    )
    (group,) = result["groups"].values()
    assert group["noise_ceiling"][0] == pytest.approx(1.0) and group["seeds_per_checkpoint"] == 2
    assert good["brute_force_student_epochs"] == 5 * 2 * 30 and good["brute_force_wall_s"] == pytest.approx(20.0)


def test_incomplete_trajectories_are_left_out_with_the_reason(tmp_path):
    store = CheckpointStore(tmp_path, "exp")
    scores(store)
    result = evaluate_selectors(rows(skip=(1, 30)), read_all_scores(store))
    (group,) = result["groups"].values()
    assert group["trajectories"] == [traj(0), traj(2)]
    assert result["skipped"] == [
        f"{traj(1)} -> mlp_small: no student results for epoch(s) [30] (sweep `every_checkpoint`)"
    ]
    md, text = render_selectors(result, "markdown"), render_selectors(result, "text")
    assert "| good |" in md and "noise ceiling" in md and "Left out" in text
    lines = list(csv.DictReader(io.StringIO(render_selectors(result, "csv"))))
    assert {r["selector"] for r in lines} == {"good", "bad", "mid", "last checkpoint (full)", "oracle (val)"}
    none = evaluate_selectors(rows(), {})
    assert none["groups"] == {} and "every_checkpoint" in render_selectors(none, "text")


def test_leaderboard_marks_unstable_picks_only_when_flagged(tmp_path):
    store = CheckpointStore(tmp_path, "exp")
    scores(store, unstable_in=2)
    rs = [
        result_row(f"selected:{sel}", s, s, [(traj(s), 20)], 0.7) for sel in ("good", "mid", "other") for s in range(3)
    ]
    board = {
        b["teacher_choice"]: b
        for b in board_for(OmegaConf.create({"storage": str(tmp_path), "name": "exp"}), rs, read_all_scores(store))
    }
    assert board["selected:mid"]["unstable"] is True and board["selected:good"]["unstable"] is False
    assert board["selected:other"]["unstable"] is None  # the scores carry no flag for it: nothing shown
    from harness.report.leaderboard import render

    text = render(list(board.values()), "text")
    assert "selected:mid [unstable]" in text and "selected:good [unstable]" not in text
    line = {r["teacher_choice"]: r for r in csv.DictReader(io.StringIO(render(list(board.values()), "csv")))}
    assert (
        line["selected:mid"]["unstable"],
        line["selected:good"]["unstable"],
        line["selected:other"]["unstable"],
    ) == ("true", "false", "n/a")


def test_every_row_costs_student_epochs_and_seconds_and_regret_is_plotted_against_them(tmp_path):
    store = CheckpointStore(tmp_path, "exp")
    for t in range(3):
        write_scores(
            store,
            traj(t),
            list(GT),
            {"good": {"epoch": 20}, "proxy": {"epoch": 30, "confidence": 0.7}},
            {"good": dict(GT), "proxy": {e: float(i) for i, e in enumerate(GT)}},
            TIMINGS,
            SELECTORS,
        )
        doc = read_scores(store, traj(t))
        doc["proxy"] = {"proxy": {"pick": 30, "cost": {"student_epochs": 64, "seconds": 4.0, "setup_s": 1.0}}}
        seal_scores(store, traj(t), doc)  # the scorer's own writer: a sealed file
    packed = [{**r, "pack_size": 4} for r in rows()]  # a packed row holds its pack's wall time: 1/4 is its share
    result = evaluate_selectors(packed, read_all_scores(store))
    r = by_selector(result)
    assert (r["proxy"]["student_epochs"], r["proxy"]["cost_s"], r["proxy"]["regret_pp"]) == (
        64,
        4.0,
        pytest.approx(1.0),
    )
    assert (r["good"]["student_epochs"], r["good"]["cost_s"]) == (0, pytest.approx(3.0))  # MI: scorer seconds only
    assert (r["last checkpoint (full)"]["student_epochs"], r["last checkpoint (full)"]["cost_s"]) == (0, 0.0)
    brute = r["oracle (val)"]
    assert (
        (brute["student_epochs"], brute["cost_s"])
        == (5 * 2 * 30, pytest.approx(5.0))
        == (brute["brute_force_student_epochs"], brute["brute_force_wall_s"])
    )
    md = render_selectors(result, "markdown")
    assert "cost student-epochs/traj" in md and "| proxy |" in md and "80.0%" in md  # 4 s of 5 s
    line = {x["selector"]: x for x in csv.DictReader(io.StringIO(render_selectors(result, "csv")))}
    assert line["proxy"]["student_epochs"] == "64.0" and line["oracle (val)"]["student_epochs"] == "300.0"
    (png,) = plot_selector_cost(result, tmp_path / "plots")
    assert png.name == "selector_cost-mnist1d-cnn1d_small-mlp_small.png" and png.read_bytes()[:4] == b"\x89PNG"


RANKS_A, RANKS_B = [1, 2, 3, 4, 5], [3, 2, 1, 5, 4]  # Spearman rho 1 - 6 * 10 / (5 * 24) = 0.5


def rows_at(ranks_b: list[int], n_traj: int = 3) -> list[dict]:
    """Two student seeds per checkpoint whose accuracies rank the checkpoints as RANKS_A / ranks_b."""
    out = []
    for t in range(n_traj):
        for s, ranks in ((t, RANKS_A), (t + n_traj, ranks_b)):
            out += [result_row(f"epoch:{e}", s, t, [(traj(t), e)], 0.7 + 0.01 * r) for e, r in zip(GT, ranks)]
    return out


def test_reliability_is_the_spearman_brown_step_up_and_the_ceiling_its_root(tmp_path):
    assert reliability(0.5) == (pytest.approx(2 / 3), pytest.approx(math.sqrt(2 / 3)))
    assert reliability(1.0) == (1.0, 1.0) and reliability(-0.4) == (0.0, 0.0)  # disagreeing halves: none
    assert all(math.isnan(x) for x in reliability(math.nan))
    store = CheckpointStore(tmp_path, "exp")
    scores(store)
    result = evaluate_selectors(rows_at(RANKS_B), read_all_scores(store))
    (group,) = result["groups"].values()
    assert group["split_half_rho"][0] == pytest.approx(0.5)  # the halves of 2 seeds: one seed each
    assert group["reliability"][0] == pytest.approx(2 / 3) and group["noise_ceiling"][0] == pytest.approx(0.8165, 1e-4)
    assert group["students_per_checkpoint"] == (2, 2)
    md = render_selectors(result, "markdown")
    assert "n = 3 trajectories, 2 students per checkpoint per trajectory" in md
    assert "split-half rho +0.50" in md and "reliability 0.67" in md and "noise ceiling 0.82" in md
    line = next(csv.DictReader(io.StringIO(render_selectors(result, "csv"))))
    assert (line["ground_truth_reliability"], line["noise_ceiling"], line["split_half_rho"]) == (
        "0.6667",
        "0.8165",
        "0.5",
    )
    assert line["students_per_checkpoint"] == "2"
    (reversed_group,) = evaluate_selectors(rows_at(RANKS_A[::-1]), read_all_scores(store))["groups"].values()
    assert reversed_group["split_half_rho"][0] == pytest.approx(-1.0)
    assert reversed_group["reliability"][0] == 0.0 and reversed_group["noise_ceiling"][0] == 0.0


@pytest.mark.parametrize("noise_sd", [1.0, 2.0])
def test_noise_ceiling_is_the_correlation_of_the_truth_with_the_noisy_ground_truth(noise_sd):
    """Seeded: 40 checkpoints with true values, 6 noisy student seeds each. sqrt(Spearman-Brown of
    the split-half rho) predicts the rho between the truth (a perfect selector) and the seeds' mean;
    the uncorrected split-half rho falls well below it (it was no ceiling)."""
    rng = np.random.default_rng(0)
    half, ceiling, perfect = [], [], []
    for _ in range(60):
        truth = rng.normal(size=40)
        acc = truth[:, None] + rng.normal(0.0, noise_sd, (40, 6))
        entries = {e: {"pairs": {(s, 0): float(acc[e, s]) for s in range(6)}} for e in range(40)}
        half.append(split_half(entries))
        ceiling.append(reliability(half[-1])[1])
        perfect.append(spearman(list(truth), list(acc.mean(axis=1))))
    assert np.mean(ceiling) == pytest.approx(np.mean(perfect), abs=0.02)
    assert np.mean(half) < np.mean(perfect) - 0.15
