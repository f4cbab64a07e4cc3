"""Row files one by one: what makes a file a valid result row, and why one is set aside.

Shared by the results table (``harness/results.py``) and its journal
(``harness/results_journal.py``); see ``harness/results.py`` for the layout and the rules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.fileio import ROW_MAX_BYTES, StoredFileError, atomic_create, read_regular_bytes
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
    shas: dict[str, tuple[str, int]] = field(default_factory=dict)  # run id -> (sha256, size): valid, not journaled so


class TableLayout:
    """Where a results table keeps its rows, views, set-aside rows and lock under the experiment
    folder ``root`` (a folder or an object-store prefix): the layout both tables share."""

    INDEX = "rows.verified.json"  # what the last compaction processed

    def __init__(self, root: Any) -> None:
        self.root = root
        self.rows_dir = root / "results" / "rows"
        self.jsonl, self.csv = root / "results.jsonl", root / "results.csv"
        self.rejected_jsonl, self.rejected_dir = root / "results.rejected.jsonl", root / "results" / "rejected"
        self.lock_path = root / ".results.lock"
        self.verified_path = root / "results" / self.INDEX

    def row_path(self, run_id: str) -> Any:
        if not run_id or "/" in run_id or run_id in (".", "..") or "\0" in run_id:
            raise RowError(f"run id {run_id!r} cannot name a row file in {self.rows_dir}")
        return self.rows_dir / f"{run_id}.json"

    def find(self, run_id: str) -> dict | None:
        """The valid row of ``run_id`` or None: one file read (on an object store, one GET), checked."""
        try:
            found = check_row_file(self.row_path(run_id))
        except (FileNotFoundError, RowError):
            return None
        return found if isinstance(found, dict) else None

    def set_aside(self, items: list[SetAside]) -> None:
        """Move each row file to ``results/rejected/<reason>/`` (a new name if that one is taken);
        one that another process moved meanwhile (or, on an object store, replaced) is left."""
        moved = []
        for item in items:
            folder = self.rejected_dir / item.reason
            target, k = folder / item.path.name, 0
            while self._taken(target):
                k += 1
                target = folder / f"{item.path.name}.{k}"
            if not self._move_aside(item.path, target):
                continue
            logger.info(f"[store] row file {item.path.name} set aside to {target}: {item.detail}")
            moved.append(item)
        if moved:
            logger.warning(
                f"[store] set aside {len(moved)} row file(s) that are no valid row ({summary(moved)}) "
                f"in {self.rejected_dir}; they are not counted"
            )

    def _taken(self, target: Any) -> bool:
        raise NotImplementedError

    def _move_aside(self, path: Any, target: Any) -> bool:
        """Move ``path`` to ``target``; False when it is gone (or changed) meanwhile."""
        raise NotImplementedError


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


def row_bytes(path: Path) -> bytes | SetAside:
    """The bytes of the row file ``path`` (at most ``ROW_MAX_BYTES``, no link followed, no FIFO
    blocked on), or why it is unreadable; a missing file raises ``FileNotFoundError``."""
    try:
        return read_regular_bytes(path, ROW_MAX_BYTES, "result row file")
    except FileNotFoundError:
        raise
    except (StoredFileError, OSError) as e:
        return SetAside(path, UNREADABLE, str(e).split(";")[0])


def check_row_data(data: bytes, path: Path) -> dict | SetAside:
    """The row that the bytes ``data`` of the row file ``path`` hold if valid, else why not."""
    try:
        row = json.loads(data)
    except (ValueError, RecursionError) as e:
        return SetAside(path, UNREADABLE, f"result row file {path} is not valid JSON ({str(e)[:80]})")
    problem = check_row(row, path.name[:-5])
    return row if problem is None else SetAside(path, *problem)


def check_row_file(path: Path) -> dict | SetAside:
    """The row stored at ``path`` if it is a valid row file (see the module doc), else why not.
    A missing file raises ``FileNotFoundError``; nothing here blocks or follows a link."""
    data = row_bytes(path)
    return data if isinstance(data, SetAside) else check_row_data(data, path)


def summary(items: list[SetAside]) -> str:
    """``2 misnamed, 1 range``: how many of each reason."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.reason] = counts.get(item.reason, 0) + 1
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


def row_text(row: dict) -> tuple[str, bytes]:
    """``(run_id, bytes)`` of ``row`` as its row file holds it; a ``RowError`` if it is no valid row."""
    run_id = str(row.get("run_id"))
    text = row_json(row)
    if problem := check_row(json.loads(text), run_id):
        raise RowError(f"the row of run {run_id} is not a valid result row ({problem[1]}); it was not recorded")
    return run_id, (text + "\n").encode()


def create_row(path: Any, data: bytes, set_aside: Callable[[list[SetAside]], None]) -> bool:
    """Create the row file (or object) ``path`` holding ``data`` exclusively (``atomic_create``: a
    hard link on a folder, a conditional PUT on an object store) and read it back: True once
    recorded; False when a valid row is stored there already (kept: a retried run never gets a
    second row). Whatever else sits under its name (torn, planted, a FIFO) is set aside first."""
    for _ in range(3):
        if atomic_create(path, data):
            verify_written(path, data)
            return True
        try:
            found = check_row_file(path)
        except FileNotFoundError:
            continue  # set aside meanwhile by another process: try again
        if isinstance(found, dict):
            return False
        set_aside([found])
    raise RowError(f"could not record {path.name}: {path} kept being taken by files that are no valid row")


def verify_written(path: Any, data: bytes) -> None:
    """Read the new row back: it counts as recorded only if it holds what was written."""
    try:
        back = read_regular_bytes(path, ROW_MAX_BYTES, "result row file")
    except (StoredFileError, OSError) as e:
        back = f"{type(e).__name__}: {e}".encode()
    if back != data:
        raise RowError(
            f"row file {path} does not read back as written ({back[:60]!r}...): the storage lost or "
            "changed it; check the disk (or bucket) and the storage's permissions, then re-run to train that run again"
        )
