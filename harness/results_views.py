"""The verified-rows index of a results table (``results/rows.verified.json``) and the appends
that keep its views current in O(new rows).

A compaction records, under the results lock, which row files it verified (name -> ``signature``:
type, size, mtime, inode; in the order they were recorded), the last row's sort key, the
signatures of the results.jsonl / results.csv it left and the CSV's columns. The next compaction
appends the new rows to both views only when nothing else moved since: every indexed row file
is in place with its signature, the views are as it left them, the experiment folder is where
it was, the new rows sort after the last one and their CSV columns are the header's. Otherwise
the caller rebuilds (harness/results.py). The index never decides what counts: a row file whose
signature differs from it is read and checked again; an unreadable index is no index.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.fileio import VIEW_MAX_BYTES, StoredFileError, open_regular, read_regular_text

logger = logging.getLogger(__name__)
NA = "n/a"  # the one "no value" marker of every CSV the harness writes
FORMAT = 2  # 1: a flat {name: signature} (still read by the done-lookup)


def signature(st: os.stat_result) -> str:
    """What changes when a file is rewritten, replaced or is no regular file: type, size, mtime, inode."""
    return f"{st.st_mode:o} {st.st_size} {st.st_mtime_ns} {st.st_ino}"


def lstat_signature(path: Path) -> str | None:
    """``signature`` of ``path`` itself (a link is not followed); None if there is none."""
    try:
        return signature(os.lstat(path))
    except FileNotFoundError:
        return None


@dataclass
class RowIndex:
    """What the last compaction verified and left (see the module doc)."""

    rows: dict[str, str] = field(default_factory=dict)  # row file name -> signature, in recorded order
    last: tuple[int, str] | None = None  # (mtime_ns, name) of the last row, the order's key
    views: dict[str, str | None] = field(default_factory=dict)  # "jsonl" / "csv" -> signature
    columns: list[str] = field(default_factory=list)  # results.csv's header
    root: str = ""  # the experiment folder the CSV's relative paths were made against
    appendable: bool = False  # a format-2 index: the views may be appended to

    def to_bytes(self) -> bytes:
        body = {"format": FORMAT, "root": self.root, "last": self.last, "views": self.views}
        return json.dumps({**body, "columns": self.columns, "rows": self.rows}).encode()


def load_index(path: Path) -> RowIndex:
    """The index at ``path``; an empty one (nothing trusted, nothing appended) when it is missing,
    unreadable or of another shape (a format-1 index: its rows only, for the done-lookup)."""
    try:
        raw = json.loads(read_regular_text(path, VIEW_MAX_BYTES, "verified rows index"))
    except FileNotFoundError:
        return RowIndex()
    except (StoredFileError, OSError, ValueError, RecursionError) as e:
        logger.warning(f"[store] {str(e)[:300]}; every row file is read instead")
        return RowIndex()
    if not isinstance(raw, dict):
        return RowIndex()
    if raw.get("format") != FORMAT:  # format 1: {name: signature}
        return RowIndex(rows={k: v for k, v in raw.items() if isinstance(v, str)})
    rows, views, columns, last = raw.get("rows"), raw.get("views"), raw.get("columns"), raw.get("last")
    shaped = (
        isinstance(rows, dict)
        and isinstance(views, dict)
        and isinstance(columns, list)
        and all(isinstance(c, str) for c in columns)
        and (last is None or (isinstance(last, list) and len(last) == 2 and isinstance(last[0], int)))
    )
    if not shaped:
        logger.warning(f"[store] verified rows index {path} is not shaped as this harness writes it; ignored")
        return RowIndex()
    rows = {k: v for k, v in rows.items() if isinstance(v, str)}
    key = (last[0], str(last[1])) if last else None
    return RowIndex(rows, key, views, columns, str(raw.get("root", "")), appendable=True)


def new_rows(index: RowIndex, files: list[tuple[os.stat_result, str]], views: dict[str, str | None], root: str):
    """The row files added since the indexed compaction (``files``: (lstat, name), recorded
    order), when the views can take them as an append; None when a rebuild is needed (a row
    changed or removed, a view changed, the folder moved, a new row sorting before the last)."""
    if (
        not index.appendable
        or index.root != root
        or any(views[k] is None or views[k] != index.views.get(k) for k in views)
    ):
        return None
    fresh, kept = [], 0
    for st, name in files:
        known = index.rows.get(name)
        if known is None:
            fresh.append((st, name))
        elif known == signature(st):
            kept += 1
        else:
            return None  # changed since: rebuild (its place in the order may have changed too)
    if kept != len(index.rows):
        return None  # a verified row is gone
    if fresh and index.last is not None and (fresh[0][0].st_mtime_ns, fresh[0][1]) <= index.last:
        return None  # recorded before the last row: appended, it would be out of order
    return fresh


def append_view(path: Path, data: bytes) -> str:
    """Append ``data`` to the view at ``path`` (a regular file only), durably; its new signature."""
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND, "results view", single_link=True)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return signature(os.fstat(fd))
    finally:
        os.close(fd)


def read_trusted(path: str, known: str | None) -> dict | None:
    """The JSON object of the row file ``path`` without checking it again, if the file opened is
    still the one the index verified (``fstat`` signature ``known``); None otherwise (check it)."""
    if known is None:
        return None
    try:
        fd = open_regular(path, os.O_RDONLY, "result row file")
    except (StoredFileError, OSError):
        return None
    try:
        st = os.fstat(fd)
        if signature(st) != known:
            return None
        data = os.read(fd, st.st_size + 1)
    finally:
        os.close(fd)
    try:
        row = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return row if isinstance(row, dict) and len(data) == st.st_size else None


def rows_csv(rows: list[dict], root: Path | None = None) -> str:
    """Flat CSV of the rows: nested dicts become dotted columns, lists JSON cells; accuracies stay
    fractions as in the rows; ``teacher_epochs`` added (``40+80``), ``tune_trial_dir`` relative to
    ``root`` (the experiment folder) when under it, and ``n/a`` for every absent value."""
    return rows_csv_columns(rows, root)[0]


def rows_csv_columns(rows: list[dict], root: Path | None = None) -> tuple[str, list[str]]:
    """``rows_csv`` and its columns (the header, sorted)."""
    flat = [csv_cells(flatten_row(r), r, root) for r in rows]
    columns = sorted({k for r in flat for k in r})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval=NA)
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue(), columns


def csv_cells(flat: dict, row: dict, root: Path | None) -> dict:
    """One flat row of results.csv: the added and relative columns, ``n/a`` for None, NaN and ''."""
    ckpts = row.get("teacher_checkpoints") or []
    epochs = sorted(c.get("epoch") for c in ckpts if isinstance(c, dict) and c.get("epoch") is not None)
    flat["teacher_epochs"] = "+".join(map(str, epochs))
    trial = flat.get("tune_trial_dir")
    if root is not None and isinstance(trial, str) and Path(trial).is_absolute():
        with contextlib.suppress(ValueError):
            flat["tune_trial_dir"] = str(Path(trial).relative_to(root))
    return {k: NA if v is None or v == "" or (isinstance(v, float) and math.isnan(v)) else v for k, v in flat.items()}


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
