"""The rows journal of a results table (``results/rows.journal``): one short line per row file,
appended, never rewritten, so that the done-lookup and compaction cost O(new rows).

Lines (``op sha256 size run_id``; a run id with a space or a quote is written as JSON):

    + <sha> <size> <id>   ``ResultsTable.append``: the row file was created and read back as these bytes
    a <sha> <size> <id>   a compaction added a valid row file that had no line (an older store, a
                          crash between the link and the line, an append in flight) or other bytes
    - <id>                a compaction set the row file aside or found it gone: no longer a row
    ! <id>                a reader (``scan``) found the row file changed since its line (other
                          bytes, or no valid row): the next compaction rebuilds the views

The journal never makes a row count by itself: a line counts only while a file of that name is in
``rows/``, and the row files stay the truth (``scan`` checks them; a trusted read checks the bytes'
sha256 against the line). A torn or garbled line is skipped (its row file is then "unjournaled",
found by the name listing and checked). ``Journal`` caches the parsed lines per process: the lines
up to the offset the last compaction processed are folded into ``base`` (run id -> sha), the
later ones kept as ``records``, so each call reads only the bytes appended since the last.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.fileio import (
    VIEW_MAX_BYTES,
    StoredFileError,
    atomic_create,
    atomic_write_bytes,
    open_regular,
    sha256_bytes,
)
from harness.results_views import NA, RowIndex, append_view, csv_cells, current, flatten_row, rows_csv_columns
from harness.row_files import RowScan, SetAside, check_row_data, row_bytes, row_json, summary

if TYPE_CHECKING:
    from harness.results import ResultsTable

logger = logging.getLogger(__name__)
ADD, ADOPT, DROP, FLAG = "+", "a", "-", "!"
JOURNAL_AGE_S = 300.0  # ``append`` writes its line only while its row file is younger than this
Record = tuple[int, str, str, str]  # (offset after the line, op, run id, sha256)


def line(op: str, run_id: str, sha: str = "", size: int = 0) -> bytes:
    """One journal line (see the module doc)."""
    rid = run_id if run_id.isprintable() and " " not in run_id and not run_id.startswith('"') else json.dumps(run_id)
    return (f"{op} {rid}\n" if op in (DROP, FLAG) else f"{op} {sha} {size} {rid}\n").encode()


def row_line(op: str, run_id: str, data: bytes) -> bytes:
    """The ``+`` / ``a`` line of a row file holding ``data``."""
    return line(op, run_id, sha256_bytes(data), len(data))


def parse(data: bytes, start: int) -> tuple[list[Record], int]:
    """The records of the complete lines of ``data`` (read from offset ``start``) and the offset
    after the last complete line; malformed lines are skipped."""
    records, pos = [], 0
    while (end := data.find(b"\n", pos)) >= 0:
        if rec := _record(data[pos:end]):
            records.append((start + end + 1, *rec))
        pos = end + 1
    return records, start + pos


def _record(raw: bytes) -> tuple[str, str, str] | None:
    try:
        text = raw.decode()
        if text[:2] in ("- ", "! "):
            op, sha, rid = text[0], "", text[2:]
        else:
            op, sha, size, rid = text.split(" ", 3)
            if op not in (ADD, ADOPT) or len(sha) != 64 or not size.isdigit():
                return None
        if rid.startswith('"'):
            rid = json.loads(rid)
        return (op, rid, sha) if isinstance(rid, str) and rid else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def fold(state: dict[str, str], rec: Record) -> None:
    """Apply one record to ``state`` (run id -> sha): a second ``+`` of a live run keeps the first."""
    _, op, rid, sha = rec
    if op == DROP:
        state.pop(rid, None)
    elif op == ADOPT or (op == ADD and rid not in state):
        state[rid] = sha


def write(path: Path, data: bytes) -> None:
    """Append ``data`` (whole lines) to the journal with ``O_APPEND`` (a regular file only); a
    short line is one write, so lines of concurrent writers do not interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "rows journal", single_link=True)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


@dataclass
class Journal:
    """The parsed journal of one table in this process (see the module doc)."""

    path: Path
    ino: int | None = None
    base_offset: int = 0
    base: dict[str, str] = field(default_factory=dict)  # the fold of the lines up to base_offset
    records: list[Record] = field(default_factory=list)  # the lines after base_offset
    read_end: int = 0

    def refresh(self) -> None:
        """Read the lines appended since the last call (all of them if the file was replaced)."""
        try:
            fd = open_regular(self.path, os.O_RDONLY, "rows journal")
        except (StoredFileError, OSError) as e:  # none yet, or no regular file: no line trusted
            if not isinstance(e, FileNotFoundError):
                logger.warning(f"[store] {str(e)[:300]}; every row file is read instead")
            self._reset(None)
            return
        try:
            st = os.fstat(fd)
            if st.st_ino != self.ino or st.st_size < self.read_end:
                self._reset(st.st_ino)
            if st.st_size > VIEW_MAX_BYTES:
                raise StoredFileError(f"rows journal {self.path} is larger than {VIEW_MAX_BYTES} bytes")
            data = os.pread(fd, st.st_size - self.read_end, self.read_end) if st.st_size > self.read_end else b""
        finally:
            os.close(fd)
        new, self.read_end = parse(data, self.read_end)
        self.records.extend(new)

    def _reset(self, ino: int | None) -> None:
        self.ino, self.base_offset, self.base, self.records, self.read_end = ino, 0, {}, [], 0

    def advance(self, offset: int) -> None:
        """Fold the records up to ``offset`` into ``base`` (the offset a compaction processed)."""
        if offset <= self.base_offset:
            return
        k = 0
        while k < len(self.records) and self.records[k][0] <= offset:
            fold(self.base, self.records[k])
            k += 1
        del self.records[:k]
        self.base_offset = max(offset, self.base_offset)

    def live(self) -> dict[str, str]:
        """Run id -> sha256 of every journaled row not dropped since (a copy)."""
        state = dict(self.base)
        for rec in self.records:
            fold(state, rec)
        return state


_CACHE: dict[str, Journal] = {}


def journal(path: Path) -> Journal:
    """The cached ``Journal`` at ``path``, brought up to date."""
    j = _CACHE.setdefault(str(path), Journal(path))
    j.refresh()
    return j


def fold_tail(j: Journal) -> tuple[list[str], bool]:
    """Fold ``j``'s records into its base (a compaction processing them): the run ids of the ``+``
    lines of runs not live before them (new rows), and whether the views must be rebuilt instead
    (a ``!`` line, or a ``+`` line recording other bytes for a live run: its file was replaced).
    A ``+`` line of a run that an ``a`` line of the same tail adopted is no new row: the compaction
    that wrote the ``a`` line added it (it found the file before its append wrote the line)."""
    new, rebuild = [], False
    adopted = {rec[2] for rec in j.records if rec[1] == ADOPT}
    for rec in j.records:
        if rec[1] == ADD and rec[2] not in adopted:
            if rec[2] not in j.base:
                new.append(rec[2])
            elif j.base[rec[2]] != rec[3]:
                rebuild = True
        rebuild = rebuild or rec[1] == FLAG
        fold(j.base, rec)
    j.records, j.base_offset = [], j.read_end
    return new, rebuild


def rebuild(table: ResultsTable) -> int:
    """Both views from every row file, each checked, and the journal squared with them: an ``a``
    line for a valid row file without a line of its bytes, a ``-`` line for a journaled run with
    no valid row; the index at the journal's end as read before. Under the results lock."""

    scan = table.scan_checked()
    table.set_aside(scan.set_aside)
    if not scan.rows and not os.path.lexists(table.jsonl) and not os.path.lexists(table.verified_path):
        return 0
    j = journal(table.journal_path)
    j.advance(j.read_end)
    ino, end, valid = j.ino, j.read_end, {r["run_id"] for r in scan.rows}
    lines = [line(ADOPT, rid, sha, size) for rid, (sha, size) in scan.shas.items()]
    lines += [line(DROP, rid) for rid in sorted(j.base.keys() - valid)]
    text, columns = rows_csv_columns(scan.rows, table.root)
    atomic_write_bytes(table.jsonl, "".join(row_json(r) + "\n" for r in scan.rows).encode())
    atomic_write_bytes(table.csv, text.encode())
    write(table.journal_path, b"".join(lines))
    now_ino = os.lstat(table.journal_path).st_ino
    last = None
    if scan.signatures:
        name, sig = next(reversed(scan.signatures.items()))
        last = (int(sig.split()[2]), name)
    at = (now_ino, end if now_ino == ino else 0)
    index = RowIndex(last, table.view_signatures(), columns, str(table.root), at)
    atomic_write_bytes(table.verified_path, index.to_bytes())
    return len(scan.rows)


def append_new(table: ResultsTable, index: RowIndex, names: list[str]) -> int | None:
    """Append the rows of the journal lines after the indexed offset, and of the row files in
    ``names`` without a line, each checked, to both views; None when they must be rebuilt instead
    (the views or the journal changed, a journaled row file is gone, replaced or flagged, a new
    row sorts before the last, a new CSV column). Under the results lock."""
    if not current(index, table.view_signatures(), str(table.root)):
        return None
    j = journal(table.journal_path)
    if index.journal is None or j.ino != index.journal[0] or j.read_end < index.journal[1]:
        return None
    if j.base_offset > index.journal[1]:  # an index older than this process's reading: read afresh
        _CACHE.pop(str(j.path), None)
        j = journal(table.journal_path)
    j.advance(index.journal[1])
    new, must_rebuild = fold_tail(j)
    present = {n[:-5] for n in names}
    if must_rebuild or (j.base.keys() - present) - set(new):
        return None
    rows, bad, lines = _check_new(table, [r for r in new if r in j.base], sorted(present - j.base.keys()))
    flat = [csv_cells(flatten_row(r), r, table.root) for *_, r in rows]
    late = rows and index.last is not None and rows[0][:2] <= index.last
    if late or any(not set(f) <= set(index.columns) for f in flat):
        return None
    table.set_aside(bad)
    lines += [line(DROP, item.path.name[:-5]) for item in bad if item.path.name[:-5] in j.base]
    if rows:
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=index.columns, restval=NA).writerows(flat)
        index.views["jsonl"] = append_view(table.jsonl, "".join(row_json(r) + "\n" for *_, r in rows).encode())
        index.views["csv"] = append_view(table.csv, buf.getvalue().encode())
        index.last = rows[-1][:2]
    write(table.journal_path, b"".join(lines))
    index.journal = (index.journal[0], j.read_end)
    atomic_write_bytes(table.verified_path, index.to_bytes())
    adopted, dropped = sum(ln.startswith(b"a") for ln in lines), sum(ln.startswith(b"-") for ln in lines)
    return len(j.base) + adopted - dropped


def _check_new(table: ResultsTable, journaled: list[str], unjournaled: list[str]):
    """The new rows ((mtime_ns, file name, row), recorded order), the files that are no valid row,
    and the journal lines: ``-`` for a journaled run whose file is gone, ``a`` for a valid file
    without a line."""

    rows, bad, lines, adopt = [], [], [], set(unjournaled)
    for rid in journaled + unjournaled:
        path = table.rows_dir / f"{rid}.json"
        try:
            st, data = os.lstat(path), row_bytes(path)
        except FileNotFoundError:
            lines += [] if rid in adopt else [line(DROP, rid)]
            continue
        found = data if isinstance(data, SetAside) else check_row_data(data, path)
        if not isinstance(found, dict):
            bad.append(found)
            continue
        rows.append((st.st_mtime_ns, path.name, found))
        if rid in adopt:
            lines.append(row_line(ADOPT, rid, data))
    rows.sort(key=lambda x: x[:2])
    return rows, bad, lines


def vouched(data: bytes) -> dict | None:
    """The JSON object of row bytes a journal line vouches for (None if, against that, none)."""
    try:
        row = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return row if isinstance(row, dict) else None


def migrate(table: ResultsTable, scan: RowScan) -> None:
    """Give every valid row (``scan``) of an older store's results.jsonl its row file and ``a``
    line, move the other lines to results.rejected.jsonl (once: the rows folder then exists).
    Under the results lock."""

    lines = []
    for row in scan.rows:
        data = (row_json(row) + "\n").encode()
        if atomic_create(table.row_path(row["run_id"]), data):
            lines.append(row_line(ADOPT, row["run_id"], data))
    if lines:
        write(table.journal_path, b"".join(lines))
    if scan.set_aside:
        rejected = "".join(item.detail + "\n" for item in scan.set_aside).encode()
        fd = open_regular(table.rejected_jsonl, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "rejected rows file")
        try:
            os.write(fd, rejected)
            os.fsync(fd)
        finally:
            os.close(fd)
    table.rows_dir.mkdir(parents=True, exist_ok=True)
    logger.warning(
        f"[store] gave the {len(scan.rows)} row(s) of {table.jsonl} (a store from before row files) "
        f"their row files in {table.rows_dir}; {len(scan.set_aside)} line(s) that were no valid row "
        f"({summary(scan.set_aside)}) moved to {table.rejected_jsonl}"
    )
