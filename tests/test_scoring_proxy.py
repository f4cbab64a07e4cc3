"""Student-aware selection ``selected:proxy`` (issue 13): successive halving over real proxy
students distilled from a tiny teacher's checkpoints (no mocks)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from harness.cli import main
from harness.config import ConfigError
from harness.config_loading import load_config
from harness.distill import distill_student
from harness.experiment import load_splits, open_store
from harness.report.selectors import selector_cost
from harness.scoring.freshness import scores_fresh
from harness.scoring.proxy import (
    pick_confidence,
    planned_cost,
    proxy_selectors,
    proxy_settings,
    rung_epochs,
    rung_sizes,
)
from harness.scoring.runner import score_trajectory
from harness.scoring.scores_file import ScoresError, read_scores
from harness.scoring.teacher_picks import read_selected, read_selected_ensemble
from harness.teachers import train_trajectory
from tests.helpers import QUICKSTART, tiny_overrides

TRAJ = "cnn1d_small-mnist1d-s0"
SETUP = {
    "teacher.epochs": 8,
    "teacher.checkpoint_every": 1,
    "teacher.seeds": "[0]",
    "scoring.estimators": "[accuracy,ce_bound]",
    "scoring.proxy.selectors": "[proxy]",
    "scoring.proxy.seeds": 2,
    "scoring.ensemble_sizes": "[2]",
}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """One 8-checkpoint trajectory scored with the proxy selector (2 proxy seeds per candidate)."""
    cfg = load_config(QUICKSTART, tiny_overrides(tmp_path_factory.mktemp("proxy") / "runs", **SETUP))
    train_trajectory(cfg, "cnn1d_small", 0)
    summary = score_trajectory(cfg, open_store(cfg), TRAJ)
    return cfg, summary, read_scores(open_store(cfg), TRAJ)


def test_rung_sizes_and_planned_cost():
    assert rung_sizes(8, 3, 2) == [8, 4, 2]
    assert rung_sizes(8, 5, 2) == [8, 4, 2]  # a rung of one candidate compares nothing: never run
    assert rung_sizes(9, 3, 3) == [9, 3] and rung_sizes(5, 2, 2) == [5, 3]
    assert rung_sizes(2, 3, 2) == [2] and rung_sizes(1, 3, 2) == []
    cfg = load_config(QUICKSTART, ["scoring.proxy.epochs=2", "scoring.proxy.seeds=3"])
    s = proxy_settings(cfg, "proxy")
    assert rung_epochs(s, 3) == [2, 4, 8]
    assert planned_cost(8, s) == 3 * (8 * 2 + 4 * 2 + 2 * 4)
    assert proxy_settings(cfg, "proxy_small").epochs == 1 and proxy_settings(cfg, "proxy_large").epochs == 4
    assert s.seeds == (1000, 1001, 1002) and s.student == "mlp_small" and planned_cost(1, s) == 0


def test_successive_halving_keeps_the_right_number_per_rung_and_costs_add_up(scored):
    cfg, _, scores = scored
    res = scores["proxy"]["proxy"]
    rungs, seeds = res["rungs"], len(res["settings"]["seeds"])
    assert [len(r["candidates"]) for r in rungs] == [8, 4, 2] and [r["epochs"] for r in rungs] == [2, 4, 8]
    assert rungs[0]["candidates"] == list(range(1, 9))
    previous_end = 0
    for r, nxt in zip(rungs, rungs[1:] + [None]):
        means = {int(e): v for e, v in r["val_acc_mean"].items()}
        assert all(len(v) == seeds for v in r["val_acc"].values())
        assert means == pytest.approx({int(e): sum(v) / seeds for e, v in r["val_acc"].items()})
        k = len(nxt["candidates"]) if nxt else 1
        best = sorted(means, key=lambda e: (-means[e], e))[:k]
        assert r["kept"] == sorted(best) and (nxt is None or nxt["candidates"] == r["kept"])
        assert min(means[e] for e in best) >= max([means[e] for e in means if e not in best], default=0.0)
        assert r["student_epochs"] == len(r["candidates"]) * seeds * (r["epochs"] - previous_end)
        previous_end = r["epochs"]
    cost = res["cost"]
    assert (
        cost["student_epochs"]
        == sum(r["student_epochs"] for r in rungs)
        == planned_cost(8, proxy_settings(cfg, "proxy"))
    )
    assert cost["seconds"] >= cost["setup_s"] + sum(r["seconds"] for r in rungs) - 1e-3
    assert not open_store(cfg).read_results()  # proxy students are not sweep results


def test_the_pick_is_the_argmax_of_the_last_rung(scored):
    _, summary, scores = scored
    last = scores["proxy"]["proxy"]["rungs"][-1]
    means = {int(e): v for e, v in last["val_acc_mean"].items()}
    pick = max(sorted(means), key=lambda e: means[e])  # the earlier epoch on ties
    assert (
        scores["proxy"]["proxy"]["pick"] == pick == summary["selected"]["proxy"] == scores["selected"]["proxy"]["epoch"]
    )
    conf = scores["selection_confidence"]["proxy"]
    assert sum(conf.values()) == pytest.approx(1.0, abs=1e-3) and set(conf) == {str(e) for e in range(1, 9)}
    assert scores["selected"]["proxy"]["confidence"] == conf[str(pick)]
    assert all(conf[str(e)] == 0.0 for e in range(1, 9) if e not in means)  # eliminated earlier: never T*
    by_epoch = {c["epoch"]: c["normalized"]["proxy"]["score"] for c in scores["checkpoints"]}
    assert max(by_epoch, key=lambda e: (by_epoch[e], -e)) == pick
    assert "proxy" in scores["selectors"] and scores["selectors"]["proxy"]["kind"] == "proxy"


def test_a_proxy_member_ends_where_the_same_student_trained_alone_ends(scored, tmp_path):
    cfg, _, scores = scored
    res = scores["proxy"]["proxy"]
    alone = copy.deepcopy(cfg)
    alone.storage = str(tmp_path / "alone")  # results elsewhere; the teacher is read through a link
    (tmp_path / "alone" / cfg.name).mkdir(parents=True)
    (tmp_path / "alone" / cfg.name / "trajectories").symlink_to(
        open_store(cfg).trajectories_dir, target_is_directory=True
    )
    alone.student.epochs = res["rungs"][-1]["epochs"]  # the proxy students' schedule length
    n_val = len(load_splits(cfg).val)
    for e in res["rungs"][-1]["candidates"]:  # trained through every rung, the pack shrinking twice
        for i, seed in enumerate(res["settings"]["seeds"]):
            alone.distill.teacher_choice, alone.distill.seed = f"epoch:{e}", seed
            curve = distill_student(alone)["val_acc_per_epoch"]
            for r in res["rungs"]:
                assert r["val_acc"][str(e)][i] == pytest.approx(
                    curve[r["epochs"] - 1], abs=1.01 / n_val
                )  # one sample at most


def test_selected_proxy_resolves_and_a_distill_from_it_runs(scored):
    cfg, _, scores = scored
    store = open_store(cfg)
    pick = scores["proxy"]["proxy"]["pick"]
    assert read_selected(store, TRAJ, "proxy") == pick
    ensemble = read_selected_ensemble(store, TRAJ, 2, selector="proxy")
    assert len(ensemble) == 2 and pick in ensemble
    run = copy.deepcopy(cfg)
    run.distill.teacher_choice = "selected:proxy"
    row = distill_student(run)
    assert row["teacher_checkpoints"] == [{"trajectory": TRAJ, "epoch": pick}] and 0 < row["final_val_acc"] <= 1
    assert scores_fresh(cfg, TRAJ)
    assert not scores_fresh(
        load_config(QUICKSTART, tiny_overrides(cfg.storage, **{**SETUP, "scoring.proxy.epochs": 1})), TRAJ
    )
    with pytest.raises(ScoresError, match="scoring.proxy.selectors"):
        read_selected(store, TRAJ, "proxy_large")


def test_a_rescore_reuses_the_proxy_and_a_new_budget_is_added(scored, logs):
    cfg, _, scores = scored
    more = load_config(QUICKSTART, tiny_overrides(cfg.storage, **{**SETUP, "scoring.ensemble_selector": "proxy_small"}))
    score_trajectory(more, open_store(more), TRAJ)
    again = read_scores(open_store(more), TRAJ)
    assert "reusing pick" in logs.text
    assert again["proxy"]["proxy"]["rungs"] == scores["proxy"]["proxy"]["rungs"]
    assert again["proxy"]["proxy"]["cost"] == scores["proxy"]["proxy"]["cost"]  # a reused pick keeps its cost
    assert selector_cost(again, "proxy") == selector_cost(scores, "proxy") != (0.0, 0.0)
    small = again["proxy"]["proxy_small"]
    assert [r["epochs"] for r in small["rungs"]] == [1, 2, 4] and again["selected_ensemble"][
        "selector"
    ] == "proxy_small"
    assert scores_fresh(more, TRAJ)


def test_which_proxy_selectors_a_config_asks_for():
    assert proxy_selectors(load_config(QUICKSTART)) == []
    cfg = load_config(
        QUICKSTART, ["sweep.teacher_choices=[none,selected:proxy_large]", "scoring.ensemble_selector=proxy_small"]
    )
    assert proxy_selectors(cfg) == ["proxy_small", "proxy_large"]
    assert proxy_selectors(load_config(QUICKSTART, ["distill.teacher_choice=selected:proxy"])) == ["proxy"]


def test_confidence_is_a_paired_bootstrap_of_the_validation_rows():
    rng = np.random.default_rng(0)
    base = rng.random((1, 1, 400)) < 0.7
    better = base.copy()
    better[0, 0, np.flatnonzero(~base[0, 0])[:40]] = True  # +10 pp on the same rows
    conf = pick_confidence(np.concatenate([base, better]), [10, 20], 500, 0)
    assert conf == {"10": 0.0, "20": 1.0}
    tie = pick_confidence(np.concatenate([base, base]), [10, 20], 200, 0)
    assert tie == {"10": 1.0, "20": 0.0}  # ties go to the earlier epoch


@pytest.mark.parametrize(
    "override, key",
    [
        ("scoring.proxy.rungs=0", "scoring.proxy.rungs"),
        ("scoring.proxy.reduction_factor=1", "scoring.proxy.reduction_factor"),
        ("scoring.proxy.epochs=0", "scoring.proxy.epochs"),
        ("scoring.proxy.seeds=0", "scoring.proxy.seeds"),
        ("scoring.proxy.student=mlp_smal", "scoring.proxy.student"),
        ("scoring.proxy.selectors=[paper]", "scoring.proxy.selectors[0]"),
        ("scoring.proxy.selectors=[proxy,proxy]", "scoring.proxy.selectors"),
        ("scoring.proxy.bootstrap=10", "scoring.proxy.bootstrap"),
        ("scoring.proxy.epochz=2", "scoring.proxy.epochz"),
    ],
)
def test_proxy_config_errors_are_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(QUICKSTART, [override])
    assert "\n" not in str(e.value) and f"config key '{key}'" in str(e.value)


def test_the_cli_lists_proxy_selectors_suggests_them_and_plans_them(tmp_path, capsys):
    assert main(["list", "selectors"]) == 0
    assert "paper, paper_recon, proxy, proxy_large, proxy_small" in capsys.readouterr().out
    assert main(["distill", str(QUICKSTART), f"storage={tmp_path}", "teacher_choice=selected:proxi"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'proxy'?" in err and err.count("\n") == 1
    assert (
        main(
            [
                "score",
                str(QUICKSTART),
                f"storage={tmp_path}",
                "sweep.teacher_choices=[none,selected:proxy]",
                "--dry-run",
                "--local",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "proxy (mlp_small x 1 seed(s); candidates at epochs: 8 at 2, 4 at 4, 2 at 8; 32 student-epochs per trajectory)"
        in out
    )
    assert not (tmp_path / "quickstart").exists()  # a dry run writes nothing
