"""Row files one by one: what makes a file a valid result row, and why one is set aside.

Shared by the results table (``harness/results.py``) and its journal
(``harness/results_journal.py``); see ``harness/results.py`` for the layout and the rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.fileio import ROW_MAX_BYTES, StoredFileError, read_regular_bytes
from harness.row_schema import DIGEST_KEY, RANGE, SCHEMA, row_digest, row_problem

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
