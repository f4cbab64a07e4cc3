"""The CLI surface (issue 21): ``--version``, ``ckd config``, one-line override errors with their
fix, ``report.reported`` / ``reported=`` and ``ckd leaderboard --latex``, through ``main([...])``."""

from __future__ import annotations

import csv
import io
import re

import pytest
import yaml

from harness.cli import main
from harness.config import REPORTED_EPOCHS
from harness.config_loading import load_config
from harness.report.board import REPORTED
from harness.runs import RunResolver
from harness.store import CheckpointStore
from tests.helpers import QUICKSTART
from tests.synthetic_results import fill_store, planted_rows

EPOCHS = {10: -0.02, 20: 0.0}
OTHER = {"snapshot:[0.5,1.0]": -0.012, "full_ensemble:2": 0.0}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> CheckpointStore:
    """A store of synthetic rows for configs/quickstart.yaml (3 trajectories x 2 students)."""
    s = CheckpointStore(tmp_path_factory.mktemp("cli"), "quickstart")
    rows = planted_rows(EPOCHS, OTHER, n_traj=3, n_seeds=6)
    for r in rows:  # best-validation epoch: 1 pp below the final one, so the two reports differ
        r["test_acc_at_best_val"] = r["final_test_acc"] - 0.01
    fill_store(s, rows)
    return s


def test_version_prints_the_package_version_and_commit(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    # a git checkout here: the short sha, +dirty when harness/ has local changes
    assert re.fullmatch(r"ckd-harness \d+\.\d+\.\d+\S* \([0-9a-f]{7}(\+dirty)?\)\n", capsys.readouterr().out)


def test_config_prints_the_resolved_config_with_overrides_and_shorthands(tmp_path, capsys):
    args = ["config", str(QUICKSTART), f"storage={tmp_path}", "teacher.epochs=20", "reported=best_val"]
    assert main([*args, "--local", "teacher_choice=epoch:3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    cfg = load_config(QUICKSTART, [f"storage={tmp_path}", "teacher.epochs=20", "report.reported=best_val"])
    assert printed["teacher"]["epochs"] == 20 == cfg.teacher.epochs
    assert printed["report"]["reported"] == "best_val" and printed["cluster"]["mode"] == "local"
    assert printed["distill"]["teacher_choice"] == "epoch:3" and printed["name"] == cfg.name
    assert not any(tmp_path.iterdir())  # nothing written: no log file, no store


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "sweep.teacher_choices=[none,snapshot:[0.5,1.0]]",
            "'sweep.teacher_choices=[none,\"snapshot:[0.5,1.0]\"]'",
        ),
        (
            "sweep.teacher_choices=[none,snapshot: [0.5,1.0]]",
            "read as a YAML mapping",
        ),
        ("sweep.temperature=4", "config key 'sweep.temperature': expected a list, got 4; write sweep.temperature=[4]"),
        ("sweep.seeds=3", "expected a list, got 3; write sweep.seeds=[3]"),
        ("sweep.kd_weight={a:1}", "config key 'sweep.kd_weight': expected a list, got the mapping {a:1}"),
        ("teacher.epochs=abc", "config key 'teacher.epochs': expected an integer, got 'abc'"),
        ("teacher.epochs=[4]", "expected an integer, got the list [4]; write teacher.epochs=4"),
        ("report.alpha=x", "config key 'report.alpha': expected a number, got 'x'"),
        ("sweep.temperature=[true]", "config key 'sweep.temperature': expected a list of numbers; element 0"),
        ("report.reported=best", "did you mean 'best_val'?"),
        ("reportd=best_val", "did you mean 'reported' (= report.reported)?"),
    ],
)
def test_override_mistakes_are_one_line_with_the_fix(tmp_path, capsys, override, expected):
    assert main(["sweep", str(QUICKSTART), f"storage={tmp_path}", override]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("ckd sweep: error: ") and expected in err, err
    assert not (tmp_path / "quickstart").exists()  # nothing trained or written


def test_the_suggested_quoting_loads_the_choice():
    """The fix the error prints (inside the shell's single quotes) loads as intended."""
    cfg = load_config(QUICKSTART, ['sweep.teacher_choices=[none,"snapshot:[0.5,1.0]"]'])
    assert list(cfg.sweep.teacher_choices) == ["none", "snapshot:[0.5,1.0]"]


def test_reported_is_validated_shares_the_boards_keys_and_leaves_run_ids_alone(tmp_path):
    assert set(REPORTED_EPOCHS) == set(REPORTED)
    final = load_config(QUICKSTART, [f"storage={tmp_path}"])
    best = load_config(QUICKSTART, [f"storage={tmp_path}", "report.reported=best_val", "report.alpha=0.01"])
    assert final.report.reported == "final" and best.report.reported == "best_val"
    assert RunResolver(final).static == RunResolver(best).static  # report.* is not part of any run id


def test_leaderboard_reports_the_configured_epoch(store, capsys):
    base = ["leaderboard", str(QUICKSTART), f"storage={store.storage}", "tracking.mode=disabled"]
    means = {}
    for reported in ("final", "best_val"):
        assert main([*base, f"reported={reported}"]) == 0
        capsys.readouterr()
        rows = list(csv.DictReader(io.StringIO((store.root / "leaderboard.csv").read_text())))
        assert {r["reported"] for r in rows} == {reported}
        means[reported] = {r["teacher_choice"]: float(r["test_acc_mean_pct"]) for r in rows}
    assert all(means["final"][c] - means["best_val"][c] == pytest.approx(1.0, abs=1e-3) for c in means["final"])


def test_leaderboard_latex_writes_an_escaped_booktabs_table(store, capsys):
    args = ["leaderboard", str(QUICKSTART), f"storage={store.storage}", "tracking.mode=disabled", "--latex"]
    assert main(args) == 0
    assert f"LaTeX table: {store.root / 'leaderboard.tex'}" in capsys.readouterr().out
    tex = (store.root / "leaderboard.tex").read_text()
    board = list(csv.DictReader(io.StringIO((store.root / "leaderboard.csv").read_text())))
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
    rows = [line for line in body.strip().splitlines() if line.strip()]
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and len(rows) == len(board)
    assert "full\\_ensemble:2" in tex and "snapshot:[0.5,1.0]" in tex and "95\\% CI" in tex
    assert "full_ensemble" not in tex.replace("full\\_ensemble", "")  # every underscore escaped
    assert all(line.rstrip().endswith("\\\\") and line.count(" & ") == 4 for line in rows)
    assert "same runs as full" in tex and "reference" in tex
    assert re.search(r"snapshot:\[0\.5,1\.0\] & \d+\.\d\d ± \d+\.\d\d & 3×2 & [+-]\d+\.\d\d \[", tex)
