"""Incremental compaction (issue 22, point 3): rows verified by an earlier compaction are not read
again; new rows are appended to results.jsonl / results.csv, giving the bytes a full rebuild
gives; a changed, removed or planted row, an edited view, a new column or a row out of order
takes the path that keeps the views true; compactions run one at a time under the lock."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

import harness.results as results
from harness.results import ResultsTable, row_json, rows_csv
from tests.helpers import valid_row


def _rebuilt(table: ResultsTable) -> tuple[bytes, bytes]:
    """The jsonl and csv bytes a full rebuild writes from the row files left after a compaction
    (all valid), read here without the table: every row, in the order recorded."""
    paths = sorted(table.rows_dir.glob("*.json"), key=lambda p: (os.lstat(p).st_mtime_ns, p.name))
    rows = [json.loads(p.read_text()) for p in paths]
    return "".join(row_json(r) + "\n" for r in rows).encode(), rows_csv(rows, table.root).encode()


def _views(table: ResultsTable) -> tuple[bytes, bytes]:
    return table.jsonl.read_bytes(), table.csv.read_bytes()


@pytest.fixture
def table(tmp_path) -> ResultsTable:
    """A compacted table of three rows."""
    table = ResultsTable(tmp_path / "exp")
    for k, name in enumerate("abc"):
        assert table.append(valid_row(name, seed=k))
    assert table.compact() == 3
    return table


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The names of the row files checked (read and validated) from now on."""
    seen: list[str] = []
    real = results.check_row_file

    def spy(path: Path):
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(results, "check_row_file", spy)
    return seen


def test_new_rows_are_appended_with_the_bytes_of_a_full_rebuild(table, reads):
    for k, name in enumerate(["d", "e"]):
        assert table.append(valid_row(name, seed=10 + k, final_test_acc=0.25))
    assert table.compact() == 5
    assert reads == ["d.json", "e.json"]  # the verified rows were not read again
    assert _views(table) == _rebuilt(table)
    assert table.compact() == 5 and reads == ["d.json", "e.json"]  # nothing new: nothing read
    assert table.ids() == set("abcde") and reads == ["d.json", "e.json"]
    assert [r["run_id"] for r in table.read()] == list("abcde")  # in the order recorded


def test_a_planted_row_is_set_aside_and_the_rest_appended(table, reads):
    assert table.append(valid_row("d"))
    shutil.copy(table.rows_dir / "a.json", table.rows_dir / "copy.json")  # a copy under another name
    (table.rows_dir / "torn.json").write_text('{"run_id": "torn", "fin')
    assert table.compact() == 4
    assert sorted(reads) == ["copy.json", "d.json", "torn.json"]
    assert not (table.rows_dir / "copy.json").exists() and not (table.rows_dir / "torn.json").exists()
    assert table.set_aside_counts() == {"misnamed": 1, "unreadable": 1}
    assert _views(table) == _rebuilt(table) and table.ids() == set("abcd")


@pytest.mark.parametrize("change", ["torn", "edited", "removed", "fifo"])
def test_a_changed_or_removed_row_rebuilds_and_is_checked_again(table, reads, change):
    path = table.rows_dir / "b.json"
    if change == "torn":
        path.write_text('{"run_id": "b", "fin')
    elif change == "edited":  # still a valid row, another value: the views must show it
        path.write_text(row_json(valid_row("b", seed=1, final_test_acc=0.75)) + "\n")
    else:
        path.unlink()
        if change == "fifo":
            os.mkfifo(path)
    assert table.append(valid_row("d"))
    assert table.compact() == (4 if change == "edited" else 3)
    assert set(reads) == {"a.json", "c.json", "d.json"} | ({"b.json"} if change != "removed" else set())
    assert _views(table) == _rebuilt(table)
    assert ("0.75" in table.csv.read_text()) == (change == "edited")
    assert table.ids() == ({"a", "b", "c", "d"} if change == "edited" else {"a", "c", "d"})


def test_an_edited_view_a_new_column_or_a_late_row_rebuilds(table, reads):
    table.jsonl.write_text("edited\n")  # an edit of a view is overwritten, never kept
    assert table.compact() == 3 and len(reads) == 3
    assert _views(table) == _rebuilt(table)
    reads.clear()
    assert table.append(valid_row("d", tune_trial_dir="trial_d"))  # a column the header lacks
    assert table.compact() == 4 and len(reads) == 5  # d read by the append attempt, then all four
    assert b"tune_trial_dir" in table.csv.read_bytes().splitlines()[0] and _views(table) == _rebuilt(table)
    reads.clear()
    assert table.append(valid_row("e"))
    first = os.lstat(table.rows_dir / "a.json").st_mtime_ns
    os.utime(table.rows_dir / "e.json", ns=(first - 1, first - 1))  # recorded before the others
    assert table.compact() == 5 and len(reads) == 5
    assert [r["run_id"] for r in table.read()] == list("eabcd") and _views(table) == _rebuilt(table)


def test_an_index_from_before_or_a_damaged_one_rebuilds(table, reads):
    names = json.loads(table.verified_path.read_text())["rows"]
    table.verified_path.write_text(json.dumps(names))  # format 1: {name: signature}
    assert table.ids() == set("abc") and reads == []  # the done-lookup still trusts it
    assert table.append(valid_row("d"))
    assert table.compact() == 4 and len(reads) == 4  # no view signatures: one full rebuild
    table.verified_path.write_text("[not an index")
    assert table.compact() == 4 and _views(table) == _rebuilt(table)


def _append_and_compact(root: str, first: int) -> None:
    table = ResultsTable(Path(root))
    for k in range(first, first + 6):
        table.append(valid_row(f"r{k:03d}", seed=k))
        table.compact()


def test_concurrent_appends_and_compactions_keep_the_views_true(tmp_path):
    table = ResultsTable(tmp_path / "exp")
    assert table.append(valid_row("r999")) and table.compact() == 1
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_and_compact, args=(str(table.root), 10 * p)) for p in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert table.compact() == 19
    assert _views(table) == _rebuilt(table)
    ids = [json.loads(line)["run_id"] for line in table.jsonl.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 19 and set(ids) == table.ids()
