"""The results table: one verified row file per finished student run, the truth; flat views of them.

Layout under ``<storage>/<name>/``::

    results/rows/<run_id>.json   one file per finished run, created once, atomically, read back
                                 before it counts as recorded: the truth
    results.jsonl, results.csv   views rebuilt by ``compact`` from the valid row files only
                                 (``ckd leaderboard``, the end of a sweep, ``ckd distill``); never
                                 read back, so an edit to them is overwritten, never kept
    results/rejected/<reason>/   row files set aside (``REASONS``), each moved once, counted by the report
    results/rows.journal         one line per row file recorded (run id, size, sha256), appended
                                 (``harness/results_journal.py``): the done-lookup and compaction
                                 read only its new lines; never makes a row count by itself
    results/rows.verified.json   how far ``compact`` processed the journal (``results_views.RowIndex``)
    results.rejected.jsonl       lines of an older store's results.jsonl that were no valid row

A row file counts only if it is valid (``check_row_file``): a regular file of at most 1 MiB
(read without following a link or blocking on a FIFO), one JSON object, its run id equal to its
file name (so a copy under another name is not a second row, and each run has one row), of the
row schema with values in range (``harness/row_schema.py``) and, when it records a ``digest``
(rows written since digests), matching it (``row_digest``: so a torn or hand-edited row is caught
even where its values stay in range). Readers skip anything else and say how many; ``compact``
and a writer that finds one under its own name move it aside. The digest is no signature: whoever
can write the store can recompute it; a row without one (written before digests) counts through
the other checks.

Finishing a run costs the same with 0 or 100,000 rows present: a temp file in ``rows/`` is
hard-linked to ``<run_id>.json`` (fails if it exists, so a retried run is never duplicated) and
no shared file is rewritten, which is also what makes it safe on NFS-like shared storage.
The sweep's done-lookup (``done_ids``) and compaction cost one listing of the names in
``rows/`` plus O(new rows); reading all rows (``scan``, the report) is O(n) small-file reads. A store from
before row files (a results.jsonl and no ``rows/``) is read as it is, and migrated into row files
(each line checked like a row file) by its first write or compaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

from harness.fileio import (
    TEMP_SUFFIX,
    VIEW_MAX_BYTES,
    StoredFileError,
    exclusive_lock,
    read_regular_bytes,
    read_regular_text,
    remove_stale_temps,
    sha256_bytes,
)
from harness.results_journal import ADD, FLAG, Journal, append_new, journal, migrate, rebuild, row_line, vouched, write
from harness.results_journal import line as jline
from harness.results_views import (  # noqa: F401 (rows_csv, flatten_row: used from here)
    NA,
    RowIndex,
    append_view,
    csv_cells,
    current,
    flatten_row,
    load_index,
    lstat_signature,
    rows_csv,
    rows_csv_columns,
    signature,
)
from harness.row_files import (
    LEGACY_LINES,
    REASONS,
    UNREADABLE,
    RowError,
    RowScan,
    SetAside,
    TableLayout,
    check_row,
    check_row_data,
    check_row_file,
    create_row,
    row_bytes,
    row_json,  # noqa: F401 (used from here)
    row_text,
    summary,
)

logger = logging.getLogger(__name__)


class ResultsTable(TableLayout):
    """Rows of one experiment folder (``root``); see the module doc for the layout."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)  # verified_path: how far compaction processed the journal
        self.journal_path = root / "results" / "rows.journal"

    # ------------------------------------------------------------------ write: O(1)
    def append(self, row: dict) -> bool:
        """Record ``row`` durably: True once its file is written and read back as written; False
        when a valid row of that run is stored already (kept: a retried run never gets a second
        row). Whatever else sits under its name (torn, planted, a FIFO) is set aside first."""
        run_id, data = row_text(row)
        if self._legacy():
            with exclusive_lock(self.lock_path):
                self._migrate_locked()
        if not create_row(self.row_path(run_id), data, self.set_aside):
            return False
        self._journal_written(run_id, data)
        return True

    def _journal_written(self, run_id: str, data: bytes) -> None:
        """The row's journal line (one ``O_APPEND`` write). A failed line is no failed row: its
        file is then found by the name listing, checked and given an ``a`` line by a compaction."""
        try:
            write(self.journal_path, row_line(ADD, run_id, data))
        except (StoredFileError, OSError) as e:
            logger.warning(f"[store] row {run_id} recorded, its journal line not ({e}); its file is read instead")

    # ------------------------------------------------------------------ read
    def find(self, run_id: str) -> dict | None:
        """The valid row of ``run_id`` or None: one file read (an older store: its results.jsonl)."""
        if self._legacy():
            return next((r for r in self._legacy_scan().rows if r["run_id"] == run_id), None)
        return super().find(run_id)

    def done_ids(self) -> set[str]:
        """Run ids that have a row: the sweep's done-lookup, O(new rows) plus one listing of the
        names in ``rows/``. Trusts the journal: a name in ``rows/`` with a live journal line counts
        unread (an in-place edit since is caught by ``scan``/``ids``, not here); a name without
        one (an older store, a planted file, a crash before the line) is read and checked."""
        if self._legacy():
            return {r["run_id"] for r in self._legacy_scan().rows}
        if not self.rows_dir.is_dir():
            return set()
        live, out = self._journal().live(), set()
        for name in self._names()[0]:
            if (rid := name[:-5]) in live:
                out.add(rid)
            else:
                with contextlib.suppress(FileNotFoundError):
                    if isinstance(found := check_row_file(self.rows_dir / name), dict):
                        out.add(found["run_id"])
        return out

    def ids(self) -> set[str]:
        """Run ids that have a valid row, every row file read (``scan(trust=True)``: a file holding
        the bytes its journal line records is parsed, any other checked)."""
        return {r["run_id"] for r in self.scan(trust=True).rows}

    def _journal(self) -> Journal:
        """The cached journal, its lines up to the indexed compaction's offset folded."""
        j = journal(self.journal_path)
        if (at := load_index(self.verified_path).journal) and at[0] == j.ino:
            j.advance(at[1])
        return j

    def read(self) -> list[dict]:
        """Every valid row, each run once, in the order they were recorded; says what it skipped."""
        scan = self.scan(trust=True)
        if scan.set_aside:
            where = self.jsonl if self._legacy() else self.rows_dir
            logger.warning(
                f"[store] skipped {len(scan.set_aside)} stored row(s) in {where} that are no valid row "
                f"({summary(scan.set_aside)}); `ckd leaderboard` sets them aside"
            )
        return scan.rows

    def scan(self, trust: bool = False) -> RowScan:
        """Every row file (see the module doc), nothing moved, each checked (the report's numbers
        come from here: a row edited in place keeping its size and mtime is still caught).
        ``trust=True``: a file holding the bytes its journal line records (sha256) is parsed, not
        checked again (``read``, ``ids``: any change to the file is still caught). A journaled row
        file found changed gets a ``!`` line: the next compaction rebuilds the views."""
        scan = self.scan_checked(trust)
        if changed := [item.path.name[:-5] for item in scan.set_aside] + list(scan.shas):
            live = self._journal().live()
            with contextlib.suppress(StoredFileError, OSError):
                write(self.journal_path, b"".join(jline(FLAG, rid) for rid in changed if rid in live))
        return scan

    def scan_checked(self, trust: bool = False) -> RowScan:
        """``scan`` without the ``!`` lines (the rebuild's, under the lock)."""
        if self._legacy():
            return self._legacy_scan()
        scan, live = RowScan(), self._journal().live()
        for st, name in self._row_files():
            path, rid = self.rows_dir / name, name[:-5]
            try:
                data = row_bytes(path)
            except FileNotFoundError:
                continue  # set aside meanwhile by a compaction
            if isinstance(data, SetAside):
                scan.set_aside.append(data)
                continue
            sha = sha256_bytes(data)
            found = vouched(data) if trust and live.get(rid) == sha else None
            found = found if found is not None else check_row_data(data, path)
            if isinstance(found, dict):
                scan.rows.append(found)
                scan.signatures[name] = signature(st)
                if live.get(rid) != sha:
                    scan.shas[rid] = (sha, len(data))
            else:
                scan.set_aside.append(found)
        return scan

    def set_aside_counts(self, scan: RowScan | None = None) -> dict[str, int]:
        """How many rows were set aside, by reason (``REASONS``; ``LEGACY_LINES``: lines of an
        older results.jsonl): those in ``results/rejected/`` plus those of ``scan`` still in place."""
        counts: dict[str, int] = {}
        for item in (scan or RowScan()).set_aside:
            counts[item.reason] = counts.get(item.reason, 0) + 1
        if self.rejected_dir.is_dir() and not self.rejected_dir.is_symlink():
            for entry in os.scandir(self.rejected_dir):
                reason = entry.name if entry.name in REASONS and entry.is_dir(follow_symlinks=False) else UNREADABLE
                n = sum(1 for _ in os.scandir(entry.path)) if reason == entry.name else 1
                counts[reason] = counts.get(reason, 0) + n
        if os.path.lexists(self.rejected_jsonl):
            try:
                lines = read_regular_bytes(self.rejected_jsonl, VIEW_MAX_BYTES, "rejected rows file").count(b"\n")
            except (StoredFileError, OSError) as e:
                logger.warning(f"[store] {e}")
                lines = 0
            if lines:
                counts[LEGACY_LINES] = lines
        return counts

    # ------------------------------------------------------------------ compaction: O(new rows)
    def compact(self, full: bool = False) -> int:
        """Bring results.jsonl + results.csv up to date with the valid row files (under the results
        lock), moving the others aside; returns the number of rows. The rows of the journal lines
        since the last compaction (and unjournaled row files) are checked and appended when nothing
        else changed (``results_journal.append_new``); else, or with ``full``, both views are rebuilt from every
        row file, each read and checked again (what catches a row edited in place)."""
        with exclusive_lock(self.lock_path):
            remove_stale_temps(self.root)
            self._migrate_locked()
            names, temps = self._names()
            self._remove_stale_row_temps(temps)
            appended = None if full else append_new(self, load_index(self.verified_path), names)
            return appended if appended is not None else rebuild(self)

    def _remove_stale_row_temps(self, temps: list[str], age_s: float = 600.0) -> None:
        """Delete the temp files of row writes interrupted ``age_s`` ago or more; a younger one
        may be a write in flight (``append`` holds no lock), which must keep its temp."""
        old = time.time_ns() - int(age_s * 1e9)
        for name in temps:
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(self.rows_dir / name).st_mtime_ns < old:
                    os.unlink(self.rows_dir / name)

    def view_signatures(self) -> dict[str, str | None]:
        return {"jsonl": lstat_signature(self.jsonl), "csv": lstat_signature(self.csv)}

    def _taken(self, target: Path) -> bool:
        return os.path.lexists(target)

    def _move_aside(self, path: Path, target: Path) -> bool:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return False  # moved meanwhile by another process
        return True

    # ------------------------------------------------------------------ a store from before row files
    def _legacy(self) -> bool:
        """A results.jsonl and no rows folder: a store from before row files, not migrated yet."""
        if self.rows_dir.is_symlink():
            raise RowError(f"{self.rows_dir} is a symbolic link, not a folder; move it away and re-run")
        return not self.rows_dir.is_dir() and os.path.lexists(self.jsonl)

    def _legacy_scan(self) -> RowScan:
        """The valid rows of an older store's results.jsonl (each run once: its first line)."""
        scan, seen = RowScan(), set()
        text = read_regular_text(self.jsonl, VIEW_MAX_BYTES, "results view")
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                row = None
            problem = check_row(row, str(row.get("run_id")) if isinstance(row, dict) else "")
            if problem is not None:
                scan.set_aside.append(SetAside(self.jsonl, problem[0], line))  # (detail: the line itself)
            elif row["run_id"] not in seen:
                seen.add(row["run_id"])
                scan.rows.append(row)
        return scan

    def _migrate_locked(self) -> None:
        """Give every valid row of an older store's results.jsonl its row file (``migrate``)."""
        if self._legacy():
            migrate(self, self._legacy_scan())

    # ------------------------------------------------------------------ helpers
    def _row_files(self) -> list[tuple[os.stat_result, str]]:
        """The row files' (``lstat``, name), oldest first (by modification time, then name): the
        order they were recorded in."""
        if not self.rows_dir.is_dir():
            return []
        with os.scandir(self.rows_dir) as it:
            entries = [(e.stat(follow_symlinks=False), e.name) for e in it if _is_row_name(e.name)]
        entries.sort(key=lambda e: (e[0].st_mtime_ns, e[1]))
        return entries

    def _names(self) -> tuple[list[str], list[str]]:
        """The names of the row files and of the row writes' temp files in ``rows/`` (no ``stat``)."""
        names = os.listdir(self.rows_dir) if self.rows_dir.is_dir() else []
        temps = [n for n in names if n.startswith(".") and n.endswith(TEMP_SUFFIX)]
        return [n for n in names if _is_row_name(n)], temps


def _is_row_name(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(".")
