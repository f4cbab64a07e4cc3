"""Rows are the truth (issue 18, faults 3, 4, 5, 7 and 8), each injected for real into a store
that holds real result rows (two students trained by `ckd sweep --local`): results.jsonl/.csv are
views rebuilt from verified row files; a row counts only if it is named by its run id, of the row
schema with values in range, and of this config's recipe; a row is recorded only once stored."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.config_loading import load_config
from harness.results import ResultsTable, RowError
from harness.row_schema import RANGE, SCHEMA, row_digest, row_problem
from harness.runs import Run, RunResolver
from harness.store import CheckpointStore
from harness.teacher_logits import data_key
from tests.helpers import QUICKSTART, tiny_overrides, valid_row

CHOICE = ["sweep.teacher_choices=[none]", "sweep.seeds=[0,1]", "distill.teacher_choice=none"]


def _args(storage: Path, *extra: str) -> list[str]:
    return [str(QUICKSTART), *tiny_overrides(storage), *CHOICE, *extra]


def _cfg(storage: Path, *extra: str):
    return load_config(QUICKSTART, [*tiny_overrides(storage), *CHOICE, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A storage with two real rows (the `none` students of seeds 0 and 1) and their report."""
    storage = tmp_path_factory.mktemp("rows") / "runs"
    assert main(["sweep", *_args(storage), "--local"]) == 0
    assert main(["leaderboard", *_args(storage)]) == 0
    return storage


@pytest.fixture
def store(trained, tmp_path) -> CheckpointStore:
    """A private copy of the trained storage (each test injects its own fault)."""
    shutil.copytree(trained, tmp_path / "runs", symlinks=True)
    return CheckpointStore(tmp_path / "runs", "quickstart")


def _leaderboard(store: CheckpointStore, capsys) -> tuple[str, list[dict], str]:
    """`ckd leaderboard` on ``store``: (leaderboard.csv bytes as text, its rows, the printed text)."""
    capsys.readouterr()
    assert main(["leaderboard", *_args(store.storage)]) == 0
    board = (store.root / "leaderboard.csv").read_text()
    return board, list(csv.DictReader(io.StringIO(board))), capsys.readouterr().out


def _row_files(store: CheckpointStore) -> list[Path]:
    return sorted(store.results.rows_dir.glob("*.json"))


def test_real_rows_are_of_the_schema_and_of_this_config(store):
    """What the harness records passes the schema, and hashes to its own id under its config."""
    rows = store.read_results()
    assert len(rows) == 2 and all(row_problem(r) is None for r in rows)
    resolver = RunResolver(_cfg(store.storage))
    assert all(resolver.run_id_of(r) == r["run_id"] for r in rows)


@pytest.mark.timeout(120)
def test_a_copy_under_another_name_is_set_aside_once_and_n_stays(store, capsys):
    """Fault 3: a row file copied under another name was appended at every compaction (n 5->6->7)."""
    board, _, _ = _leaderboard(store, capsys)
    shutil.copy(_row_files(store)[0], store.results.rows_dir / "copy.json")
    for _ in range(3):
        again, lines, out = _leaderboard(store, capsys)
        assert again == board and [line["n"] for line in lines] == ["2"]
        assert len(store.results_jsonl.read_text().splitlines()) == 2
        assert "Not counted: 1 not named by its run id (a copy under another name)" in out
    assert [p.name for p in (store.results.rejected_dir / "misnamed").iterdir()] == ["copy.json"]
    assert len(_row_files(store)) == 2


@pytest.mark.timeout(120)
def test_an_edit_to_results_jsonl_is_overwritten_never_kept(store, capsys):
    """Fault 4: an edit to results.jsonl won over the row files (`full` 20.3% -> 99.9%) and was kept."""
    board, _, _ = _leaderboard(store, capsys)
    view = store.results_jsonl.read_text()
    edited = [{**json.loads(line), "final_test_acc": 0.999} for line in view.splitlines()]
    planted = {**edited[0], "run_id": "f" * 16, "seed": 7}
    store.results_jsonl.write_text("".join(json.dumps(r) + "\n" for r in [*edited, planted]))
    assert sorted(r["final_test_acc"] for r in store.read_results()) != [0.999, 0.999]  # readers: the row files
    again, _, out = _leaderboard(store, capsys)
    assert again == board and store.results_jsonl.read_text() == view and "Not counted" not in out


@pytest.mark.timeout(120)
def test_planted_rows_out_of_range_or_of_no_config_are_not_counted(store, capsys):
    """Fault 5: a planted row with a new run id and accuracy 5.0 was accepted (mean 180.6%)."""
    board, _, _ = _leaderboard(store, capsys)
    real = json.loads(_row_files(store)[0].read_text())
    resolver = RunResolver(_cfg(store.storage))
    out_of_range = {**real, "seed": 5, "final_test_acc": 5.0}
    out_of_range["run_id"] = resolver.run_id_of(out_of_range)  # even an honest-looking id: range-checked
    invented = {**real, "seed": 6, "run_id": "0123456789abcdef"}  # in range, but no run of this config
    for row in (out_of_range, invented):  # resealed: anyone who can write the store can recompute it
        row["digest"] = row_digest(row)
        (store.results.rows_dir / f"{row['run_id']}.json").write_text(json.dumps(row))
    again, _, out = _leaderboard(store, capsys)
    assert again == board
    assert "1 with a value out of range" in out and "1 of another config" in out
    assert (store.results.rejected_dir / "range" / f"{out_of_range['run_id']}.json").is_file()
    assert len(store.results_jsonl.read_text().splitlines()) == 3  # the view: every valid row file


@pytest.mark.timeout(120)
def test_rows_of_another_recipe_stay_stored_but_are_not_counted(store, capsys):
    """The report counts the rows this config trained (a `ckd distill` of it too), not another's."""
    board, _, _ = _leaderboard(store, capsys)
    real = json.loads(_row_files(store)[0].read_text())
    other = RunResolver(_cfg(store.storage, "student.epochs=3"))
    row = {**real, "seed": 9, "final_test_acc": 0.01}
    row["run_id"] = other.run_id_of(row)
    row["digest"] = row_digest(row)
    (store.results.rows_dir / f"{row['run_id']}.json").write_text(json.dumps(row))
    again, _, out = _leaderboard(store, capsys)
    assert again == board and out.rstrip().endswith(
        "Not counted: 1 of another config (run fields that do not hash to their run id under this config)."
    )
    assert (store.results.rows_dir / f"{row['run_id']}.json").is_file()  # a valid row: kept where it is
    distilled, _, _ = _leaderboard_after_distill(store, capsys, "distill.seed=4")
    assert [line["n"] for line in csv.DictReader(io.StringIO(distilled))] == ["3"]


def _leaderboard_after_distill(store: CheckpointStore, capsys, *extra: str):
    assert main(["distill", *_args(store.storage, *extra), "--local"]) == 0
    return _leaderboard(store, capsys)


@pytest.mark.timeout(60)
def test_a_fifo_or_a_link_to_dev_zero_as_a_row_file_is_set_aside_without_hanging(store, capsys):
    """Fault 7: the report hung on a FIFO and ate 9 GB from /dev/zero, then MemoryError."""
    board, _, _ = _leaderboard(store, capsys)
    os.mkfifo(store.results.rows_dir / "fifo.json")
    os.symlink("/dev/zero", store.results.rows_dir / "zero.json")
    assert len(store.read_results()) == 2 and len(store.results.ids()) == 2  # readers: no hang
    again, _, out = _leaderboard(store, capsys)
    assert again == board and "Not counted: 2 unreadable" in out
    aside = store.results.rejected_dir / "unreadable"
    assert sorted(p.name for p in aside.iterdir()) == ["fifo.json", "zero.json"]
    assert (aside / "zero.json").is_symlink() and not _row_files(store)[2:]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("planted", ["torn", "another run's row"])
def test_a_bad_file_under_the_id_being_trained_is_set_aside_and_the_row_recorded(store, capsys, caplog, planted):
    """Fault 8: a torn row file under the id being trained: the log said "recorded", the row was lost."""
    cfg = _cfg(store.storage, "distill.seed=3")
    run_id = RunResolver(cfg).resolve(Run.from_distill(cfg)).run_id
    path = store.results.rows_dir / f"{run_id}.json"
    path.write_text('{"run_id": "' + run_id + '", "final_te' if planted == "torn" else _row_files(store)[0].read_text())
    caplog.set_level("INFO", logger="harness")
    board, lines, _ = _leaderboard_after_distill(store, capsys, "distill.seed=3")
    row = json.loads(path.read_text())
    assert row["run_id"] == run_id and row["seed"] == 3 and row_problem(row) is None
    assert any(f"row {run_id} recorded" in m for m in caplog.messages)
    reason = "unreadable" if planted == "torn" else "misnamed"
    assert (store.results.rejected_dir / reason / path.name).is_file()
    assert [line["n"] for line in lines] == ["3"]


def test_recording_is_verified_and_keeps_a_valid_row(tmp_path):
    """A row is recorded once: a retry finds the stored valid row; an invalid row is refused."""
    table = ResultsTable(tmp_path / "exp")
    assert table.append(valid_row("r1")) and not table.append(valid_row("r1", final_test_acc=0.9))
    assert table.find("r1") == valid_row("r1")
    with pytest.raises(RowError, match="final_test_acc is 5.0, outside"):
        table.append(valid_row("r2", final_test_acc=5.0))
    assert table.find("r2") is None and not (table.rows_dir / "r2.json").exists()


def test_an_older_store_counts_each_run_once_and_migrates_on_write(tmp_path):
    """A results.jsonl from before row files: duplicates are one row, invalid lines set aside."""
    table = ResultsTable(tmp_path / "exp")
    table.root.mkdir()
    lines = [valid_row("a"), valid_row("a", final_test_acc=0.9), valid_row("b", final_val_acc=math.nan)]
    table.jsonl.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert [r["final_test_acc"] for r in table.read()] == [0.5] and table.ids() == {"a"}
    assert table.compact() == 1 and [p.name for p in table.rows_dir.iterdir()] == ["a.json"]
    assert len(table.rejected_jsonl.read_text().splitlines()) == 1
    assert table.set_aside_counts() == {"line": 1}


@pytest.mark.parametrize(
    ("change", "kind", "words"),
    [
        ({"final_test_acc": 5.0}, RANGE, "final_test_acc is 5.0, outside [0, 1]"),
        ({"best_val_acc": math.inf}, RANGE, "not a finite number"),
        ({"val_acc_per_epoch": [0.5, -0.1]}, RANGE, "val_acc_per_epoch[1]"),
        ({"epochs": 0}, RANGE, "epochs is 0, below 1"),
        ({"best_val_epoch": 3}, RANGE, "after the last epoch 2"),
        ({"teacher_test_acc": 1.5}, RANGE, "teacher_test_acc"),
        ({"kd_weight": 2.0}, RANGE, "kd_weight"),
        ({"seed": True}, SCHEMA, "seed is a bool"),
        ({"final_val_acc": "0.5"}, SCHEMA, "not a number"),
        ({"teacher_checkpoints": [{"trajectory": "t"}]}, SCHEMA, "teacher_checkpoints[0].epoch"),
        ({"run_id": None}, SCHEMA, "run_id is null"),
    ],
)
def test_the_row_schema_names_the_key(change, kind, words):
    problem = row_problem({**valid_row("r"), **change})
    assert problem is not None and problem[0] == kind and words in problem[1]


def test_a_row_missing_a_key_is_not_a_row():
    row = valid_row("r")
    del row["final_test_acc"]
    assert row_problem(row) == (SCHEMA, "no final_test_acc")
    assert row_problem(valid_row("r")) is None


def test_the_done_lookup_reads_again_what_changed_since_compaction(tmp_path):
    """``ids`` skips reading the row files compaction verified, unless they changed since."""
    table = ResultsTable(tmp_path / "exp")
    for name in ("a", "b", "c"):
        assert table.append(valid_row(name))
    assert table.compact() == 3 and table.ids() == {"a", "b", "c"}
    (table.rows_dir / "a.json").write_text('{"run_id": "a", "fin')  # torn in place
    (table.rows_dir / "b.json").unlink()
    os.mkfifo(table.rows_dir / "b.json")  # replaced by a FIFO
    assert table.ids() == {"c"} and table.find("a") is None
    table.verified_path.write_text("[not an index")  # a damaged index: every file is read
    assert table.ids() == {"c"}


def _canonical_sha256(row: dict) -> str:
    """sha256 of the row's canonical JSON without its digest (sorted keys, compact separators)."""
    body = {k: v for k, v in row.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.mark.timeout(300)
def test_a_row_records_its_inputs_and_its_digest(store):
    """A row records the sha256 of its teachers' checkpoints (the manifest's, which is the file's)
    and the data key, and a digest of itself; its run id is what it was before (counted)."""
    teachers = ("teacher.seeds=[0]", "distill.teacher_choice=full")
    assert main(["teachers", *_args(store.storage, *teachers)]) == 0
    assert main(["distill", *_args(store.storage, *teachers), "--local"]) == 0
    cfg = _cfg(store.storage, *teachers)
    rows = {r["teacher_choice"]: r for r in store.read_results()}
    row, trajectory = rows["full"], store.trajectory("cnn1d_small-mnist1d-s0")
    (epoch,) = [c["epoch"] for c in row["teacher_checkpoints"]]
    sha = {c["epoch"]: c["sha256"] for c in trajectory.manifest()["checkpoints"]}[epoch]
    assert sha == hashlib.sha256(trajectory.checkpoint_path(epoch).read_bytes()).hexdigest()
    assert row["inputs"] == {"teachers": [sha], "data": data_key(cfg)}
    assert rows["none"]["inputs"] == {"teachers": [], "data": data_key(cfg)}
    for r in rows.values():
        assert r["digest"] == _canonical_sha256(r) == row_digest(r) and row_problem(r) is None
    assert RunResolver(cfg).counted(list(rows.values())) == (list(rows.values()), 0)


@pytest.mark.timeout(120)
def test_an_edited_sealed_row_is_set_aside_and_not_counted(store, capsys, caplog):
    """A row edited in place (accuracy changed, still in range, digest kept) no longer counts."""
    board, _, _ = _leaderboard(store, capsys)
    path = _row_files(store)[0]
    edited = {**json.loads(path.read_text()), "final_test_acc": 0.999}
    path.write_text(json.dumps(edited))
    assert row_problem(edited) is None and len(store.read_results()) == 1  # readers: not counted
    assert store.results.find(edited["run_id"]) is None
    caplog.set_level("INFO", logger="harness")
    again, lines, out = _leaderboard(store, capsys)
    assert again != board and [line["n"] for line in lines] == ["1"]
    assert "0.999" not in again and len(store.results_jsonl.read_text().splitlines()) == 1
    assert "Not counted: 1 that do not match their digest (changed after they were written)" in out
    assert [p.name for p in (store.results.rejected_dir / "digest").iterdir()] == [path.name]
    named = [m for m in caplog.messages if path.name in m]
    assert len(named) == 1 and "does not match its digest" in named[0]


@pytest.mark.timeout(120)
def test_a_row_without_a_digest_still_counts(store, capsys):
    """A row written before digests (no ``inputs``, no ``digest``) is checked as before and counts."""
    board, _, _ = _leaderboard(store, capsys)
    tables = ("leaderboard.md", "claims.md", "claims.csv", "selectors.md", "selectors.csv")
    before = {name: (store.root / name).read_bytes() for name in tables}
    for path in _row_files(store):
        row = json.loads(path.read_text())
        del row["digest"], row["inputs"]
        path.write_text(json.dumps(row, sort_keys=True) + "\n")
    again, _, out = _leaderboard(store, capsys)
    assert again == board and "Not counted" not in out  # (and no table shows inputs or digest)
    assert {name: (store.root / name).read_bytes() for name in tables} == before
    assert len(store.read_results()) == 2 and not store.results.rejected_dir.exists()


def test_a_sealed_row_that_does_not_match_its_digest_is_not_recorded(tmp_path):
    table = ResultsTable(tmp_path / "exp")
    sealed = valid_row("r1", inputs={"teachers": ["0" * 64], "data": "d"})
    sealed["digest"] = row_digest(sealed)
    with pytest.raises(RowError, match="does not match its digest"):
        table.append({**sealed, "final_test_acc": 0.9})
    assert table.append(sealed) and table.find("r1") == sealed
    assert row_problem({**sealed, "inputs": {"teachers": [], "data": "d"}})[0] == SCHEMA  # one sha256 per teacher
