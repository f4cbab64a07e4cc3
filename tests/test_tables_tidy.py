"""Issue 21: one NA marker in every CSV the report writes, tidy results.csv columns, console
tables within 120 columns, and the student compute per leaderboard row."""

from __future__ import annotations

import csv
import io

from harness.report.board import build_leaderboard
from harness.report.claims import check_claims
from harness.report.claims_console import render_claims_console
from harness.report.console import short_answer
from harness.report.leaderboard import render
from harness.report.report import write_report
from harness.results import rows_csv
from harness.store import CheckpointStore
from tests.helpers import QUICKSTART
from tests.synthetic_results import fill_store, planted_rows, result_row, traj

EPOCHS = {20: 0.004, 40: 0.0, 60: -0.002, 80: 0.0}
OTHER = {"snapshot:[0.5,1.0]": -0.01, "full_ensemble:2": 0.0, "selected:paper": 0.001}
NA_LIKE = {"", "-", "n/a", "na", "nan", "null", "—"}  # not "none": the no-teacher choice


def _rows() -> list[dict]:
    return planted_rows(EPOCHS, OTHER, n_traj=3, n_seeds=6, picks={"paper": 40})


def _na_spellings(text: str) -> set[str]:
    return {cell.strip().lower() for row in csv.reader(io.StringIO(text)) for cell in row} & NA_LIKE


def test_every_report_csv_spells_no_value_n_a(tmp_path):
    """leaderboard/claims/selectors/results.csv of a real report: "no value" is only ever `n/a`;
    the reference row's paired fields are n/a and its verdict says `reference`."""
    from harness.config_loading import load_config

    store = CheckpointStore(tmp_path, "quickstart")
    fill_store(store, _rows())
    store.compact_results()
    write_report(load_config(QUICKSTART, [f"storage={tmp_path}"]), plots=False)
    for name in ("leaderboard.csv", "claims.csv", "selectors.csv", "results.csv"):
        text = (store.root / name).read_text()
        assert _na_spellings(text) <= {"n/a"}, name
    board = {r["teacher_choice"]: r for r in csv.DictReader(io.StringIO((store.root / "leaderboard.csv").read_text()))}
    assert _na_spellings((store.root / "leaderboard.csv").read_text()) == {"n/a"}  # absent values exist
    full = board["full"]
    assert full["verdict"] == full["answer"] == "reference" and full["diff_mean_pct"] == full["p_value"] == "n/a"
    assert board["none"]["teacher_arch"] == "n/a" and board["none"]["trajectories"] == "n/a"
    pct = [h for h in full if h.startswith(("diff_", "none_diff_"))]
    assert pct and all(h.endswith("_pct") for h in pct)  # every percentage column says so


def test_results_csv_adds_teacher_epochs_and_relative_trial_dir(tmp_path):
    root = tmp_path / "exp"
    snap = result_row("snapshot:[0.5,1.0]", 0, 0, [(traj(0), 80), (traj(0), 40)], 0.7)
    snap["tune_trial_dir"] = str(root / "tune" / "sweep" / "trial_0")
    other = {**result_row("none", 1, None, [], 0.6), "tune_trial_dir": "/elsewhere/trial_1"}
    lines = list(csv.DictReader(io.StringIO(rows_csv([snap, other], root))))
    assert lines[0]["teacher_epochs"] == "40+80" and lines[1]["teacher_epochs"] == "n/a"
    assert lines[0]["tune_trial_dir"] == "tune/sweep/trial_0" and lines[1]["tune_trial_dir"] == "/elsewhere/trial_1"
    assert lines[0]["final_test_acc"] == "0.7"  # results stay fractions
    assert lines[1]["teacher_arch"] == "n/a"


def test_console_tables_fit_120_columns_and_files_keep_every_column():
    board = build_leaderboard(_rows())
    console = render(board, "console")
    assert max(len(line) for line in console.splitlines()) <= 120
    assert "reference" in console and "Δ vs full pp [95% CI]" in console
    full_width = render(board, "text")
    assert max(len(line) for line in full_width.splitlines()) > 120 and "teacher epochs" in full_width
    assert "kd_weight" in render(board, "markdown")
    claims = check_claims(board)
    text = render_claims_console(claims)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "worse: contradicted" in text and "(Table 2)" in text


def test_short_answers():
    assert short_answer("undecided: about 9 more trajectories would decide it") == "undecided (+9 traj)"
    assert short_answer("equivalent within ±0.50 pp") == "equivalent ±0.50 pp"
    assert short_answer("= full (same runs: not tested)") == "= full (same runs)"


def test_compute_per_row_is_student_wall_time_with_pack_shares():
    rows = [result_row("none", s, None, [], 0.6, wall=3600.0) for s in range(2)]
    rows += [{**result_row("full", s, s, [(traj(s), 80)], 0.7, wall=7200.0), "pack_size": 4} for s in range(2)]
    board = {b["teacher_choice"]: b for b in build_leaderboard(rows)}
    assert board["none"]["compute"] == 2.0 and board["full"]["compute"] == 1.0  # 2 × 2 h / 4
    line = {r["teacher_choice"]: r for r in csv.DictReader(io.StringIO(render(list(board.values()), "csv")))}
    assert line["full"]["compute_student_h"] == "1"
    assert "student h" in render(list(board.values()), "markdown").splitlines()[4]
