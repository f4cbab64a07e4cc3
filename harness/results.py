"""The results table: one verified row file per finished student run, the truth; flat views of them.

Layout under ``<storage>/<name>/``::

    results/rows/<run_id>.json   one file per finished run, created once, atomically, read back
                                 before it counts as recorded: the truth
    results.jsonl, results.csv   views rebuilt by ``compact`` from the valid row files only
                                 (``ckd leaderboard``, the end of a sweep, ``ckd distill``); never
                                 read back, so an edit to them is overwritten, never kept
    results/rejected/<reason>/   row files set aside (``REASONS``), each moved once, counted by the report
    results/rows.verified.json   which row files ``compact`` verified (size, mtime, inode): the
                                 done-lookup (``ids``) reads only the others; never decides what counts
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
Reading all rows (the report, the sweep's done-lookup) is O(n) small-file reads. A store from
before row files (a results.jsonl and no ``rows/``) is read as it is, and migrated into row files
(each line checked like a row file) by its first write or compaction.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.fileio import (
    ROW_MAX_BYTES,
    TEMP_SUFFIX,
    VIEW_MAX_BYTES,
    StoredFileError,
    atomic_create,
    atomic_write_bytes,
    exclusive_lock,
    open_regular,
    read_json_object,
    read_regular_bytes,
    read_regular_text,
    remove_stale_temps,
)
from harness.results_views import (  # noqa: F401 (rows_csv, flatten_row: used from here)
    NA,
    RowIndex,
    append_view,
    csv_cells,
    flatten_row,
    load_index,
    lstat_signature,
    new_rows,
    read_trusted,
    rows_csv,
    rows_csv_columns,
    signature,
)
from harness.row_schema import DIGEST_KEY, RANGE, SCHEMA, row_digest, row_problem

logger = logging.getLogger(__name__)
UNREADABLE, MISNAMED, DIGEST = "unreadable", "misnamed", "digest"
LEGACY_LINES = "line"  # lines of an older store's results.jsonl, in results.rejected.jsonl
REASONS = {  # why a row was set aside -> the report's words (after a count)
    UNREADABLE: "unreadable (torn, not one JSON object, a link, a FIFO, too large)",
    MISNAMED: "not named by its run id (a copy under another name)",
    SCHEMA: "with a key missing or of the wrong type",
    RANGE: "with a value out of range (an accuracy outside [0, 1], epochs < 1, not finite)",
    DIGEST: "that do not match their digest (changed after they were written)",
    LEGACY_LINES: "line(s) of an older results.jsonl that were no valid row (in results.rejected.jsonl)",
}


class RowError(ValueError):
    """A row that cannot be recorded (not a valid row, or not read back as written); the message
    names the file and what to do."""


@dataclass(frozen=True)
class SetAside:
    """A row file (or an older store's line) that is no valid row: where, why (``REASONS``), what."""

    path: Path
    reason: str
    detail: str


@dataclass
class RowScan:
    """Every valid row (in the order they were recorded) and what was found that is no valid row."""

    rows: list[dict] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)
    signatures: dict[str, str] = field(default_factory=dict)  # file name -> signature, of the valid rows


def row_json(row: dict) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def check_row(row: Any, name: str) -> tuple[str, str] | None:
    """None if ``row`` is a valid row stored under the run id ``name``, else ``(reason, detail)``."""
    if not isinstance(row, dict):
        return UNREADABLE, f"holds a JSON {type(row).__name__}, not an object"
    if problem := row_problem(row):
        return problem
    if DIGEST_KEY in row and row[DIGEST_KEY] != row_digest(row):
        return DIGEST, "does not match its digest (changed after it was written)"
    if row["run_id"] != name:
        return MISNAMED, f"records run {row['run_id']!r}, not {name!r}"
    return None


def check_row_file(path: Path) -> dict | SetAside:
    """The row stored at ``path`` if it is a valid row file (see the module doc), else why not.
    A missing file raises ``FileNotFoundError``; nothing here blocks or follows a link."""
    try:
        row = read_json_object(path, ROW_MAX_BYTES, "result row file")
    except FileNotFoundError:
        raise
    except (StoredFileError, OSError) as e:
        return SetAside(path, UNREADABLE, str(e).split(";")[0])
    problem = check_row(row, path.name[:-5])
    return row if problem is None else SetAside(path, *problem)


class ResultsTable:
    """Rows of one experiment folder (``root``); see the module doc for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows_dir = root / "results" / "rows"
        self.jsonl, self.csv = root / "results.jsonl", root / "results.csv"
        self.rejected_jsonl, self.rejected_dir = root / "results.rejected.jsonl", root / "results" / "rejected"
        self.lock_path = root / ".results.lock"
        self.verified_path = root / "results" / "rows.verified.json"  # the done-lookup's index (``ids``)

    def row_path(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id in (".", "..") or "\0" in run_id:
            raise RowError(f"run id {run_id!r} cannot name a row file in {self.rows_dir}")
        return self.rows_dir / f"{run_id}.json"

    # ------------------------------------------------------------------ write: O(1)
    def append(self, row: dict) -> bool:
        """Record ``row`` durably: True once its file is written and read back as written; False
        when a valid row of that run is stored already (kept: a retried run never gets a second
        row). Whatever else sits under its name (torn, planted, a FIFO) is set aside first."""
        run_id = str(row.get("run_id"))
        text = row_json(row)
        if problem := check_row(json.loads(text), run_id):
            raise RowError(f"the row of run {run_id} is not a valid result row ({problem[1]}); it was not recorded")
        if self._legacy():
            with exclusive_lock(self.lock_path):
                self._migrate_locked()
        path, data = self.row_path(run_id), (text + "\n").encode()
        for _ in range(3):
            if atomic_create(path, data):
                return self._verify_written(path, data)
            try:
                found = check_row_file(path)
            except FileNotFoundError:
                continue  # set aside meanwhile by another process: try again
            if isinstance(found, dict):
                return False
            self._set_aside([found])
        raise RowError(f"could not record run {run_id}: {path} kept being taken by files that are no valid row")

    def _verify_written(self, path: Path, data: bytes) -> bool:
        """Read the new row file back: it counts as recorded only if it holds what was written."""
        try:
            back = read_regular_bytes(path, ROW_MAX_BYTES, "result row file")
        except (StoredFileError, OSError) as e:
            back = f"{type(e).__name__}: {e}".encode()
        if back != data:
            raise RowError(
                f"row file {path} does not read back as written ({back[:60]!r}...): the storage lost or "
                "changed it; check the disk and the storage's permissions, then re-run to train that run again"
            )
        return True

    # ------------------------------------------------------------------ read
    def find(self, run_id: str) -> dict | None:
        """The valid row of ``run_id`` or None: one file read (an older store: its results.jsonl)."""
        if self._legacy():
            return next((r for r in self._legacy_scan().rows if r["run_id"] == run_id), None)
        try:
            found = check_row_file(self.row_path(run_id))
        except (FileNotFoundError, RowError):
            return None
        return found if isinstance(found, dict) else None

    def ids(self) -> set[str]:
        """Run ids that have a valid row: the done-lookup of a sweep, asked once per grid, O(n)
        ``lstat`` calls for 10^5 rows. A row file that a compaction verified and that has not
        changed since (same ``signature``) is not read again; any other file is read and checked."""
        if self._legacy():
            return {r["run_id"] for r in self._legacy_scan().rows}
        verified, out = load_index(self.verified_path).rows, set()
        if not self.rows_dir.is_dir():
            return out
        with os.scandir(self.rows_dir) as it:
            for entry in it:
                if not _is_row_name(entry.name):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if verified.get(entry.name) == signature(entry.stat(follow_symlinks=False)):
                        out.add(entry.name[:-5])
                    elif isinstance(found := check_row_file(Path(entry.path)), dict):
                        out.add(found["run_id"])
        return out

    def read(self) -> list[dict]:
        """Every valid row, each run once, in the order they were recorded; says what it skipped."""
        scan = self.scan()
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
        ``trust=True``: a file the last compaction verified, opened unchanged (same
        ``signature``), is parsed, not checked again (for views that are not verdicts)."""
        if self._legacy():
            return self._legacy_scan()
        scan, verified = RowScan(), load_index(self.verified_path).rows if trust else {}
        for st, name in self._row_files():
            path, known = os.path.join(self.rows_dir, name), signature(st)
            found = read_trusted(path, known) if verified.get(name) == known else None
            try:
                found = found if found is not None else check_row_file(Path(path))
            except FileNotFoundError:
                continue  # set aside meanwhile by a compaction
            if isinstance(found, dict):
                scan.rows.append(found)
                scan.signatures[name] = known
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
    def compact(self) -> int:
        """Bring results.jsonl + results.csv up to date with the valid row files (under the results
        lock), moving the others aside; returns the number of rows. The new rows are appended when
        nothing else changed since the last compaction (``results_views.new_rows``), else both
        views are rebuilt from every row file, each read and checked again."""
        with exclusive_lock(self.lock_path):
            remove_stale_temps(self.root)
            self._remove_stale_row_temps()
            self._migrate_locked()
            appended = self._append_new(load_index(self.verified_path))
            return appended if appended is not None else self._rebuild()

    def _remove_stale_row_temps(self, age_s: float = 600.0) -> None:
        """Delete the temp files of row writes interrupted ``age_s`` ago or more; a younger one
        may be a write in flight (``append`` holds no lock), which must keep its temp."""
        if not self.rows_dir.is_dir():
            return
        old = time.time_ns() - int(age_s * 1e9)
        with os.scandir(self.rows_dir) as it:
            for e in it:
                if e.name.startswith(".") and e.name.endswith(TEMP_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        if e.stat(follow_symlinks=False).st_mtime_ns < old:
                            os.unlink(e.path)

    def _rebuild(self) -> int:
        """Both views and the index from every row file, each checked (under the lock)."""
        scan = self.scan(trust=False)
        self._set_aside(scan.set_aside)
        index = RowIndex(scan.signatures, root=str(self.root))
        if scan.rows or os.path.lexists(self.jsonl):
            text, index.columns = rows_csv_columns(scan.rows, self.root)
            atomic_write_bytes(self.jsonl, "".join(row_json(r) + "\n" for r in scan.rows).encode())
            atomic_write_bytes(self.csv, text.encode())
        if scan.signatures:
            name, sig = next(reversed(scan.signatures.items()))
            index.last = (int(sig.split()[2]), name)
        index.views = self._view_signatures()
        if scan.signatures or os.path.lexists(self.verified_path):
            atomic_write_bytes(self.verified_path, index.to_bytes())
        return len(scan.rows)

    def _append_new(self, index: RowIndex) -> int | None:
        """Append the rows recorded since the indexed compaction to both views; None when they
        must be rebuilt instead (``results_views.new_rows``, or new CSV columns). Under the lock."""
        fresh = new_rows(index, self._row_files(), self._view_signatures(), str(self.root))
        if fresh is None:
            return None
        rows, bad = [], []
        for st, name in fresh:
            with contextlib.suppress(FileNotFoundError):
                found = check_row_file(self.rows_dir / name)
                (rows if isinstance(found, dict) else bad).append((st, name, found))
        flat = [csv_cells(flatten_row(r), r, self.root) for _, _, r in rows]
        if any(not set(f) <= set(index.columns) for f in flat):
            return None  # a new column: the header changes
        self._set_aside([found for _, _, found in bad])
        if rows:
            buf = io.StringIO()
            csv.DictWriter(buf, fieldnames=index.columns, restval=NA).writerows(flat)
            index.views["jsonl"] = append_view(self.jsonl, "".join(row_json(r) + "\n" for _, _, r in rows).encode())
            index.views["csv"] = append_view(self.csv, buf.getvalue().encode())
            index.rows.update((name, signature(st)) for st, name, _ in rows)
            index.last = (rows[-1][0].st_mtime_ns, rows[-1][1])
            atomic_write_bytes(self.verified_path, index.to_bytes())
        return len(index.rows)

    def _view_signatures(self) -> dict[str, str | None]:
        return {"jsonl": lstat_signature(self.jsonl), "csv": lstat_signature(self.csv)}

    def _set_aside(self, items: list[SetAside]) -> None:
        """Move each file to ``results/rejected/<reason>/`` (a new name if that one is taken)."""
        moved = []
        for item in items:
            folder = self.rejected_dir / item.reason
            folder.mkdir(parents=True, exist_ok=True)
            target, k = folder / item.path.name, 0
            while os.path.lexists(target):
                k += 1
                target = folder / f"{item.path.name}.{k}"
            try:
                os.rename(item.path, target)
            except FileNotFoundError:
                continue  # moved meanwhile by another process
            logger.info(f"[store] row file {item.path.name} set aside to {target}: {item.detail}")
            moved.append(item)
        if moved:
            logger.warning(
                f"[store] set aside {len(moved)} row file(s) that are no valid row ({summary(moved)}) "
                f"in {self.rejected_dir}; they are not counted"
            )

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
        """Give every valid row of an older store's results.jsonl its row file and move the other
        lines to results.rejected.jsonl (once: the rows folder then exists). Under the lock."""
        if not self._legacy():
            return
        scan = self._legacy_scan()
        for row in scan.rows:
            atomic_create(self.row_path(row["run_id"]), (row_json(row) + "\n").encode())
        if scan.set_aside:
            lines = "".join(item.detail + "\n" for item in scan.set_aside).encode()
            fd = open_regular(self.rejected_jsonl, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "rejected rows file")
            try:
                os.write(fd, lines)
                os.fsync(fd)
            finally:
                os.close(fd)
        self.rows_dir.mkdir(parents=True, exist_ok=True)
        logger.warning(
            f"[store] gave the {len(scan.rows)} row(s) of {self.jsonl} (a store from before row files) "
            f"their row files in {self.rows_dir}; {len(scan.set_aside)} line(s) that were no valid row "
            f"({summary(scan.set_aside)}) moved to {self.rejected_jsonl}"
        )

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


def _is_row_name(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(".")


def summary(items: list[SetAside]) -> str:
    """``2 misnamed, 1 range``: how many of each reason."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.reason] = counts.get(item.reason, 0) + 1
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
