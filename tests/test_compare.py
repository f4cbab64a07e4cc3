"""``ckd compare A B``: two experiments' leaderboards side by side, paired B - A where runs match."""

from __future__ import annotations

import csv

import pytest

from harness.cli import main
from harness.store import CheckpointStore
from tests.helpers import QUICKSTART
from tests.synthetic_results import fill_store, planted_rows

EPOCHS = {10: -0.02, 20: 0.0}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A: synthetic rows of configs/quickstart.yaml; B: the same runs, ``full`` 1 pp better (by
    0.9, 1.0, 1.1 pp on the three trajectories) and
    ``epoch:10`` missing, plus a ``full_ensemble:2`` row A does not have."""
    root = tmp_path_factory.mktemp("compare")
    a_rows = planted_rows(EPOCHS, {}, n_traj=3, n_seeds=6)
    b_rows = planted_rows(EPOCHS, {"full_ensemble:2": 0.0}, n_traj=3, n_seeds=6)
    for r in b_rows:
        if r["teacher_choice"] == "full":
            r["final_test_acc"] = (
                [x for x in a_rows if x["run_id"] == r["run_id"]][0]["final_test_acc"]
                + 0.01
                + 0.001 * (r["seed"] % 3 - 1)
            )
    b_rows = [r for r in b_rows if r["teacher_choice"] != "epoch:10"]
    fill_store(CheckpointStore(root / "a", "quickstart"), a_rows)
    fill_store(CheckpointStore(root / "b", "quickstart"), b_rows)
    return root


def test_compare_configs_pairs_matched_runs_and_writes_csv_md(stores, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", str(QUICKSTART), str(QUICKSTART), "--a", f"storage={stores / 'a'}"]
    assert main([*argv, "--b", f"storage={stores / 'b'}", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines() if str(stores) not in str(line)) <= 120
    rows = {r["teacher_choice"]: r for r in csv.DictReader((out / "compare.csv").open())}
    full = rows["full"]
    assert full["a_n"] == full["b_n"] == "6" and full["matched"] == "6" and full["trajectories"] == "3"
    assert float(full["diff"]) == pytest.approx(0.01) and float(full["ci_low"]) <= 0.01 <= float(full["ci_high"])
    assert float(rows["none"]["diff"]) == pytest.approx(0.0, abs=1e-3) and rows["none"]["trajectories"] == "6"
    assert rows["epoch:10"]["b_n"] == "0" and rows["epoch:10"]["diff"] == ""
    line = next(x for x in text.splitlines() if "epoch:10" in x)
    assert "no matching runs" in line
    assert "+1.00" in next(x for x in text.splitlines() if " full " in x)
    assert "full_ensemble:2" in (out / "compare.md").read_text()


def test_compare_accepts_experiment_folders_and_metric(stores, tmp_path, capsys):
    argv = ["compare", str(stores / "a" / "quickstart"), str(stores / "b" / "quickstart")]
    assert main([*argv, "--metric", "best_val", "--out", str(tmp_path)]) == 0
    assert "test accuracy at the best_val epoch" in capsys.readouterr().out
    assert (tmp_path / "compare.csv").is_file()


def test_compare_a_missing_experiment_is_one_line_with_the_fix(stores, tmp_path, capsys):
    argv = ["compare", str(QUICKSTART), str(QUICKSTART), "--a", f"storage={stores / 'a'}"]
    assert main([*argv, "--b", f"storage={tmp_path}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ckd compare: error: no experiment at {tmp_path}/quickstart; run `ckd run CONFIG` first"
