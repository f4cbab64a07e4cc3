"""The results table on an object store (harness/results_objects.py), against moto's S3 server:
one row per run even when two writers race, planted or torn rows neither counted nor kept,
incremental compaction giving a full rebuild's bytes, an edited view rebuilt, the POSIX table's
views byte for byte from the same rows."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import harness.results_objects as results_objects
from harness.objects import ObjectPath, storage_location
from harness.results import ResultsTable
from harness.results_objects import ObjectResultsTable
from harness.row_files import RowError
from tests.helpers import valid_row

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def table(s3_storage) -> ObjectResultsTable:
    root = storage_location(s3_storage)
    assert isinstance(root, ObjectPath)
    return ObjectResultsTable(root / "exp")


@pytest.fixture
def checked(monkeypatch) -> list[str]:
    """The names of the row objects checked (read and validated) from now on."""
    seen: list[str] = []
    real = results_objects.check_row_data

    def spy(data: bytes, path):
        seen.append(path.name)
        return real(data, path)

    monkeypatch.setattr(results_objects, "check_row_data", spy)
    return seen


def _fill(table, names: str | list[str], **values) -> list[dict]:
    rows = [valid_row(name, seed=k, **values) for k, name in enumerate(names)]
    assert all(table.append(r) for r in rows)
    return rows


def _views(table: ObjectResultsTable) -> tuple[bytes, bytes]:
    return table.jsonl.read_bytes(), table.csv.read_bytes()


def test_append_find_and_a_duplicate_refused(table):
    row = valid_row("r1")
    assert table.append(row) is True
    assert table.find("r1") == row
    assert table.append(valid_row("r1", seed=5)) is False  # a retried run: the first row is kept
    assert table.find("r1")["seed"] == 0
    assert table.find("missing") is None and table.find("a/b") is None
    with pytest.raises(RowError, match="not a valid result row"):
        table.append(valid_row("bad", final_test_acc=1.5))
    assert table.find("bad") is None
    assert [p.name for p in table.rows_dir.iterdir()] == ["r1.json"]
    assert table.done_ids() == table.ids() == {"r1"}


def test_threads_racing_on_one_run_id_record_one_row(table):
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda k: table.append(valid_row("same", seed=k)), range(8)))
    assert sorted(got) == [False] * 7 + [True]
    assert table.read() == [valid_row("same", seed=got.index(True))]


def _append_in_child(root: str, seed: int, queue) -> None:
    queue.put(ObjectResultsTable(storage_location(root)).append(valid_row("same", seed=seed)))


def test_processes_racing_on_one_run_id_record_one_row(table):
    ctx = multiprocessing.get_context("fork")  # each child makes its own S3 client (objects.filesystem)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_append_in_child, args=(str(table.root), k, queue)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(queue.get(timeout=5) for _ in procs) == [False, True]
    assert len(table.read()) == 1


def test_planted_rows_are_not_counted_and_set_aside(table, s3_server):
    _fill(table, "ab")
    (table.rows_dir / "torn.json").put(b'{"run_id": "torn", "see')
    copy = json.dumps(valid_row("a")).encode()  # a valid row under another name
    bucket, key = (table.rows_dir / "copy.json").key.split("/", 1)
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=copy)
    assert table.append(valid_row("c"))
    assert table.done_ids() == table.ids() == {"a", "b", "c"}
    scan = table.scan()
    assert sorted(i.path.name for i in scan.set_aside) == ["copy.json", "torn.json"]
    assert table.set_aside_counts(scan) == {"misnamed": 1, "unreadable": 1}
    assert table.compact() == 3
    assert sorted(p.name for p in table.rows_dir.iterdir()) == ["a.json", "b.json", "c.json"]
    assert (table.rejected_dir / "misnamed" / "copy.json").read_bytes() == copy
    assert (table.rejected_dir / "unreadable" / "torn.json").is_file()
    assert table.set_aside_counts(table.scan()) == {"misnamed": 1, "unreadable": 1}
    assert [json.loads(line)["run_id"] for line in table.jsonl.read_bytes().splitlines()] == ["a", "b", "c"]


def test_a_torn_row_under_its_own_name_is_set_aside_by_append(table):
    table.row_path("r").put(b"{torn")
    assert table.find("r") is None and table.done_ids() == set()
    assert table.append(valid_row("r")) is True
    assert table.find("r") == valid_row("r")
    assert (table.rejected_dir / "unreadable" / "r.json").read_bytes() == b"{torn"


def test_incremental_compaction_gives_a_full_rebuilds_bytes(table, checked):
    _fill(table, ["r00", "r01", "r02"])
    assert table.compact() == 3
    checked.clear()
    _fill(table, ["r03", "r04"])
    assert table.done_ids() == {f"r0{k}" for k in range(5)}
    assert sorted(checked) == ["r03.json", "r04.json"]  # the indexed rows counted unread
    checked.clear()
    assert table.compact() == 5
    assert sorted(checked) == ["r03.json", "r04.json"]  # O(new rows) reads
    incremental = _views(table)
    assert table.compact(full=True) == 5
    assert _views(table) == incremental
    assert [r["run_id"] for r in table.read()] == [f"r0{k}" for k in range(5)]


def test_a_new_csv_column_or_a_gone_row_rebuilds(table):
    _fill(table, ["r0", "r1"])
    assert table.compact() == 2
    assert table.append(valid_row("r2", note="x"))  # a column the CSV has not
    assert table.compact() == 3
    assert b"note" in table.csv.read_bytes().splitlines()[0]
    table.row_path("r1").unlink()
    assert table.compact() == 2
    assert b'"r1"' not in table.jsonl.read_bytes()
    rebuilt = _views(table)
    assert table.compact(full=True) == 2 and _views(table) == rebuilt


def test_an_edited_view_is_rebuilt(table, checked):
    _fill(table, "ab")
    table.compact()
    expected = _views(table)
    table.jsonl.put(expected[0] + b'{"run_id": "forged"}\n')
    checked.clear()
    assert table.compact() == 2
    assert _views(table) == expected
    assert sorted(checked) == ["a.json", "b.json"]  # a rebuild reads every row again


def test_a_rewritten_row_is_caught(table):
    _fill(table, "ab")
    table.compact()
    table.row_path("a").put(json.dumps(valid_row("a", final_test_acc=0.9)).encode())
    assert table.compact() == 2
    assert b'"final_test_acc": 0.9' in table.jsonl.read_bytes()
    changed = valid_row("b")
    changed["final_test_acc"] = 7.0  # out of range: the index's ETag must not vouch for it
    table.row_path("b").put(json.dumps(changed).encode())
    assert table.done_ids() == table.ids() == {"a"}


def test_order_is_stable_and_kept_by_compaction(table):
    _fill(table, ["c", "a", "b"])
    first = [r["run_id"] for r in table.read()]
    assert [r["run_id"] for r in table.read()] == first
    table.compact()
    _fill(table, ["d"])
    table.compact()
    in_view = [json.loads(line)["run_id"] for line in table.jsonl.read_bytes().splitlines()]
    assert in_view[:3] == first and in_view == [r["run_id"] for r in table.read()]


def test_views_equal_the_posix_tables_byte_for_byte(table, tmp_path):
    names = [f"r{k:02d}" for k in range(6)]  # recorded order == name order: both backends agree
    posix = ResultsTable(tmp_path / "exp")
    for backend in (posix, table):
        _fill(backend, names[:4])
        backend.compact()
        _fill(backend, names[4:])
        assert backend.compact() == 6
    assert table.read() == posix.read()
    assert table.jsonl.read_bytes() == posix.jsonl.read_bytes()
    assert table.csv.read_bytes() == posix.csv.read_bytes()


def test_compact_of_an_empty_table_writes_nothing(table):
    assert table.compact() == 0
    assert not table.jsonl.is_file() and table.read() == [] and table.done_ids() == set()


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "benchmarks/bench_results_scale.py", "--rows", "20", "--new", "3", "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    got = json.loads(out.read_text())
    assert set(got["backends"]) == {"posix", "objects"}
    assert got["backends"]["objects"]["append"]["requests_per_row"] == pytest.approx(2.0)
