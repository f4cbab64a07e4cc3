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
import harness.results_journal as results_journal
import harness.row_files as row_files
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
    real = results.check_row_data

    def spy(data: bytes, path: Path):
        seen.append(path.name)
        return real(data, path)

    monkeypatch.setattr(results, "check_row_data", spy)
    monkeypatch.setattr(results_journal, "check_row_data", spy)
    monkeypatch.setattr(row_files, "check_row_data", spy)
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
    if change != "removed":  # an in-place change is not looked for by the O(new rows) compaction
        assert table.compact() == 4 and reads == ["d.json"]
        reads.clear()
    assert table.compact(full=change != "removed") == (4 if change == "edited" else 3)
    parsed = {"a.json", "c.json", "d.json"} | ({"b.json"} if change in ("torn", "edited") else set())
    assert set(reads) == parsed  # removed: found missing by the listing, so rebuilt; a FIFO is never parsed
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
    assert table.compact() == 5 and len(reads) == 6  # e read by the append attempt, then all five
    assert [r["run_id"] for r in table.read()] == list("eabcd") and _views(table) == _rebuilt(table)


def test_an_index_from_before_or_a_damaged_one_rebuilds(table, reads):
    table.verified_path.write_text(json.dumps({"a.json": "1 2 3 4"}))  # format 1: {name: signature}
    assert table.done_ids() == set("abc") and reads == []  # the done-lookup reads the journal
    assert table.append(valid_row("d"))
    assert table.compact() == 4 and len(reads) == 4  # no journal offset: one full rebuild
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


def test_a_reader_that_finds_a_row_changed_flags_it_for_the_next_compaction(table, reads):
    (table.rows_dir / "b.json").write_text(row_json(valid_row("b", seed=1, final_test_acc=0.75)) + "\n")
    assert table.compact() == 3 and reads == []  # no new line: the edit is not looked for here
    assert [r["final_test_acc"] for r in table.read() if r["run_id"] == "b"] == [0.75]  # read: bytes != line
    assert table.journal_path.read_bytes().endswith(b"! b\n")
    assert table.compact() == 3 and "0.75" in table.csv.read_text() and _views(table) == _rebuilt(table)
    reads.clear()
    assert table.read() and reads == []  # the rebuild journaled the new bytes: trusted again, no flag
    assert table.compact() == 3 and reads == []


def test_the_done_lookup_trusts_the_journal_and_checks_unjournaled_files(table, reads):
    (table.rows_dir / "a.json").write_text('{"run_id": "a", "fin')  # torn after its line
    shutil.copy(table.rows_dir / "b.json", table.rows_dir / "copy.json")  # planted, misnamed
    (table.rows_dir / "c.json").unlink()
    planted = valid_row("p")
    (table.rows_dir / "p.json").write_text(row_json(planted) + "\n")  # valid, no line
    assert table.done_ids() == {"a", "b", "p"}  # a: trusted by its line; c: gone; copy: misnamed
    assert sorted(reads) == ["copy.json", "p.json"]  # journaled rows not read
    assert table.ids() == {"b", "p"}  # every file read: the torn one does not count


def test_a_row_found_before_its_line_is_added_once(table, monkeypatch):
    """An append in flight (file linked, line not yet written) that a compaction adopts is not
    appended to the views again when its line arrives, whichever side of the ``a`` line it lands."""
    lines: list[bytes] = []
    real = results.write
    monkeypatch.setattr(results, "write", lambda path, data: lines.append(data))  # hold the appends' lines
    assert table.append(valid_row("d")) and table.append(valid_row("e"))
    monkeypatch.setattr(results, "write", real)
    real(table.journal_path, lines[0])  # d's line lands before the compaction's a line
    assert table.compact() == 5 and table.journal_path.read_bytes().splitlines()[-1].startswith(b"a ")
    real(table.journal_path, lines[1])  # e's line lands after it
    assert table.compact() == 5 and table.done_ids() == set("abcde")
    assert _views(table) == _rebuilt(table) and table.compact(full=True) == 5 and _views(table) == _rebuilt(table)


def test_torn_journal_lines_are_skipped_and_their_rows_still_found(table, reads):
    with open(table.journal_path, "ab") as fh:
        fh.write(b"+ 12")  # torn by a crash: the next line is appended to it
    assert table.append(valid_row("d"))
    assert table.done_ids() == set("abcd") and reads == ["d.json"]  # d's line is garbled: d read
    assert table.compact() == 4 and _views(table) == _rebuilt(table)
    reads.clear()
    assert table.done_ids() == set("abcd") and reads == []  # adopted by the compaction's a line
