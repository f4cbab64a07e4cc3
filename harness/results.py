"""The results table: one row per finished student run, written in O(1), compacted for reading.

Layout under ``<storage>/<name>/``::

    results/rows/<run_id>.json   one file per finished run, created once, atomically: the truth
    results.jsonl, results.csv   compacted views of every row (``compact``: ``ckd leaderboard``,
                                 the end of a sweep, ``ckd distill``); results.jsonl of older
                                 stores counts as rows too
    results.rejected.jsonl       lines of results.jsonl that could not be read (torn, not objects)
    results/rejected/            row files that could not be read

Rows are immutable once written (a trial's Tune identity goes in when the row is created).
Finishing a run costs the same with 0 or 100,000 rows present: a temp file in ``rows/`` is
hard-linked to ``<run_id>.json`` (fails if it exists, so a retried run is never duplicated) and
no shared file is rewritten, which is also what makes it safe on NFS-like shared storage.
Reading all rows is O(n) and happens at report time. Nothing unreadable is dropped silently:
readers skip it with a warning naming how many; ``compact`` moves it aside.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from harness.fileio import atomic_create, atomic_write_bytes, exclusive_lock, remove_stale_temps

logger = logging.getLogger(__name__)


def row_json(row: dict) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def parse_rows(text: str) -> tuple[list[dict], list[str]]:
    """``(rows, unreadable lines)`` of a JSON-lines text; a row must be a JSON object."""
    rows, bad = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            rows.append(value)
        else:
            bad.append(line)
    return rows, bad


class ResultsTable:
    """Rows of one experiment folder (``root``); see the module doc for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows_dir = root / "results" / "rows"
        self.jsonl, self.csv = root / "results.jsonl", root / "results.csv"
        self.rejected_jsonl, self.rejected_dir = root / "results.rejected.jsonl", root / "results" / "rejected"

    # ------------------------------------------------------------------ write: O(1)
    def append(self, row: dict) -> bool:
        """Create the row's file; False (nothing written) if that run already has a row."""
        run_id = str(row["run_id"])
        path = self.rows_dir / f"{run_id}.json"
        if path.exists() or (not self.rows_dir.is_dir() and run_id in self._compacted_ids()):
            return False  # (an older store's results.jsonl counts until `compact` gives each row a file)
        return atomic_create(path, (row_json(row) + "\n").encode())  # a concurrent duplicate fails here

    # ------------------------------------------------------------------ read
    def find(self, run_id: str) -> dict | None:
        """The row of ``run_id`` or None: one file read (or the compacted view's index)."""
        path = self.rows_dir / f"{run_id}.json"
        if path.is_file():
            rows, _ = parse_rows(path.read_text())
            return rows[0] if rows else None
        if not self.rows_dir.is_dir() and run_id in self._compacted_ids():  # an older store, not compacted yet
            return next((r for r in self._jsonl_rows()[0] if r.get("run_id") == run_id), None)
        return None

    def ids(self) -> set[str]:
        """Run ids that have a row (a directory listing plus the compacted view's ids)."""
        names = {p.name[:-5] for p in self._row_files()}
        return names | self._compacted_ids()

    def read(self) -> list[dict]:
        """Every readable row, each run once: the compacted view, then newer row files."""
        rows, bad_lines = self._jsonl_rows()
        seen = {r.get("run_id") for r in rows}
        fresh, bad_files = self._file_rows(exclude=seen)
        if bad_lines or bad_files:
            logger.warning(
                f"[store] skipped {len(bad_lines)} unreadable line(s) of {self.jsonl} and "
                f"{len(bad_files)} unreadable row file(s); `ckd leaderboard` moves them aside"
            )
        return rows + fresh

    # ------------------------------------------------------------------ compaction: O(n)
    def compact(self) -> int:
        """Rewrite results.jsonl + results.csv from every row (under the results lock), moving
        unreadable lines/files aside; returns the number of rows."""
        with exclusive_lock(self.root / ".results.lock"):
            remove_stale_temps(self.root)
            remove_stale_temps(self.rows_dir)
            rows, bad_lines = self._jsonl_rows()
            fresh, bad_files = self._file_rows(exclude={r.get("run_id") for r in rows})
            self._move_aside(bad_lines, bad_files)
            self._give_files(rows)
            rows += fresh
            if rows or self.jsonl.exists():
                atomic_write_bytes(self.jsonl, "".join(row_json(r) + "\n" for r in rows).encode())
                atomic_write_bytes(self.csv, rows_csv(rows).encode())
        return len(rows)

    def _give_files(self, rows: list[dict]) -> None:
        """Every row of results.jsonl gets its own file (older stores), so appends stay O(1)."""
        for r in rows:
            if r.get("run_id") is not None and not (self.rows_dir / f"{r['run_id']}.json").exists():
                self.append(r)

    def _move_aside(self, bad_lines: list[str], bad_files: list[Path]) -> None:
        if bad_lines:
            with open(self.rejected_jsonl, "a") as f:
                f.write("".join(line + "\n" for line in bad_lines))
                f.flush()
                os.fsync(f.fileno())
        for p in bad_files:
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            os.replace(p, self.rejected_dir / p.name)
        if bad_lines or bad_files:
            logger.warning(
                f"[store] moved {len(bad_lines)} unreadable line(s) of {self.jsonl} (torn by a crash "
                f"or not a JSON object) to {self.rejected_jsonl} and {len(bad_files)} unreadable row "
                f"file(s) to {self.rejected_dir}"
            )

    # ------------------------------------------------------------------ helpers
    def _row_files(self) -> list[Path]:
        if not self.rows_dir.is_dir():
            return []
        with os.scandir(self.rows_dir) as it:
            return [Path(e.path) for e in it if e.name.endswith(".json") and not e.name.startswith(".")]

    def _file_rows(self, exclude: set) -> tuple[list[dict], list[Path]]:
        files = sorted(self._row_files(), key=lambda p: (_mtime(p), p.name))
        rows, bad = [], []
        for p in files:
            if p.name[:-5] in exclude:
                continue
            parsed, _ = parse_rows(p.read_text()) if p.exists() else ([], [])
            if parsed:
                rows.append(parsed[0])
            else:
                bad.append(p)
        return rows, bad

    def _jsonl_rows(self) -> tuple[list[dict], list[str]]:
        if not self.jsonl.is_file():
            return [], []
        return parse_rows(self.jsonl.read_text())

    def _compacted_ids(self) -> set[str]:
        """Run ids in results.jsonl (read only for stores not compacted into row files yet, and
        once per plan)."""
        return {str(r.get("run_id")) for r in self._jsonl_rows()[0]}


def _mtime(path: Path) -> float:
    with contextlib.suppress(OSError):
        return path.stat().st_mtime_ns
    return -1.0


def rows_csv(rows: list[dict]) -> str:
    """Flat CSV of the rows: nested dicts become dotted columns, lists JSON cells."""
    flat = [flatten_row(r) for r in rows]
    columns = sorted({k for r in flat for k in r})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def flatten_row(row: dict, prefix: str = "") -> dict:
    """Nested dicts become dotted columns; lists become JSON strings (one CSV cell each)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_row(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v, default=str)
        else:
            out[key] = v
    return out
