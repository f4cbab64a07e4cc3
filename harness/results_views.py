"""The compaction index of a results table (``results/rows.verified.json``) and the appends that
keep its views current in O(new rows).

A compaction records, under the results lock, how far it processed the rows journal
(``harness/results_journal.py``: the journal's inode and offset; the views hold exactly the rows of
the journal's lines up to there), the last row's sort key, the signatures of the results.jsonl /
results.csv it left and the CSV's columns: a small file, rewritten once per compaction. The next
compaction appends the rows of the later lines when nothing else moved: the views are as it left
them, the experiment folder and the journal are where they were, the new rows sort after the last
one and their CSV columns are the header's. Otherwise the caller rebuilds (harness/results.py).
The index never decides what counts; an unreadable index is no index (a rebuild).
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
FORMAT = 3  # 1, 2: indexes of every row file's signature, from before the rows journal


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
    """What the last compaction processed and left (see the module doc)."""

    last: tuple[int, str] | None = None  # (mtime_ns, name) of the last row, the order's key
    views: dict[str, str | None] = field(default_factory=dict)  # "jsonl" / "csv" -> signature
    columns: list[str] = field(default_factory=list)  # results.csv's header
    root: str = ""  # the experiment folder the CSV's relative paths were made against
    journal: tuple[int, int] | None = None  # (inode, offset) of the rows journal processed
    appendable: bool = False  # read from a current index: the views may be appended to

    def to_bytes(self) -> bytes:
        body = {"format": FORMAT, "root": self.root, "last": self.last, "views": self.views}
        return json.dumps({**body, "columns": self.columns, "journal": self.journal}).encode()


def load_index(path: Path) -> RowIndex:
    """The index at ``path``; an empty one (nothing appended: a rebuild) when it is missing,
    unreadable or of another shape (an index from before the journal)."""
    try:
        raw = json.loads(read_regular_text(path, VIEW_MAX_BYTES, "verified rows index"))
    except FileNotFoundError:
        return RowIndex()
    except (StoredFileError, OSError, ValueError, RecursionError) as e:
        logger.warning(f"[store] {str(e)[:300]}; the views are rebuilt")
        return RowIndex()
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return RowIndex()
    views, columns, last, jr = raw.get("views"), raw.get("columns"), raw.get("last"), raw.get("journal")
    shaped = (
        isinstance(views, dict)
        and isinstance(columns, list)
        and all(isinstance(c, str) for c in columns)
        and (last is None or (isinstance(last, list) and len(last) == 2 and isinstance(last[0], int)))
        and (jr is None or (isinstance(jr, list) and len(jr) == 2 and all(isinstance(x, int) for x in jr)))
    )
    if not shaped:
        logger.warning(f"[store] verified rows index {path} is not shaped as this harness writes it; ignored")
        return RowIndex()
    key = (last[0], str(last[1])) if last else None
    return RowIndex(key, views, columns, str(raw.get("root", "")), tuple(jr) if jr else None, appendable=True)


def current(index: RowIndex, views: dict[str, str | None], root: str) -> bool:
    """Whether the views are as the indexed compaction left them (so new rows may be appended)."""
    return (
        index.appendable
        and index.root == root
        and index.journal is not None
        and all(views[k] is not None and views[k] == index.views.get(k) for k in views)
    )


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
