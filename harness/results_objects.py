"""The results table on an object store (``storage=s3://...``): ``ResultsTable``'s interface and
guarantees built from objects (``harness/objects.py``), with no append, inode, link or rename.

Layout under ``<storage>/<name>/`` (as ``harness/results.py``; no journal)::

    results/rows/<run_id>.json   one object per finished run: the truth
    results.jsonl, results.csv   views rebuilt by ``compact`` from the valid rows only
    results/rejected/<reason>/   row objects set aside (``REASONS``), copied there then deleted
    results/rows.index.json      what the last compaction put in the views (``verified_path``):
                                 each row's ETag and LastModified, the views' ETags, the CSV header
    .results.lock                the compaction lease (``exclusive_lock``: harness/object_leases.py)

What each guarantee rests on:

- one row per run: ``append`` creates its object with a conditional PUT (``put_if_absent``) that
  the server refuses when the key exists, so a retried or doubled run, even on two nodes at once,
  never writes a second row; a key taken by no valid row is set aside and the create retried.
- a recorded row is whole: a PUT is visible whole or not at all, and ``append`` reads the row
  back (one GET) and compares the bytes before it counts as recorded.
- readers count valid rows only (``check_row_data``: one JSON object named by its run id, of the
  schema, matching its digest); a row is read with a ranged GET capped at ``ROW_MAX_BYTES``.
- the views are derived: rewritten whole (one PUT each: objects cannot be appended to) and never
  read back as truth; an edited view (its ETag differs from the index's) is rebuilt.
- the index vouches by ETag (it changes whenever the object is rewritten): a listed row whose
  ETag is the indexed one holds the bytes a compaction checked. ``done_ids`` counts such a row
  unread; ``scan(trust=True)`` parses it without re-checking only if its bytes' MD5 also equals
  that ETag (S3's ETag of a single PUT), so a row replaced between LIST and GET is checked.

Order: the recorded order is (LastModified, name), as POSIX sorts by (mtime_ns, name); S3 keeps
LastModified to the second, so rows recorded in one second are in name order.

Requests (n rows, k new since the last compaction, LISTs paged by 1,000 names): ``append`` 1 PUT
+ 1 GET; ``find`` 1 GET; ``done_ids`` 1 GET (index) + 1 LIST + 1 GET per row the index does not
vouch for; ``scan``/``read``/``ids`` 1 GET (index) + 1 LIST + n GETs (sent concurrently);
``compact`` 1 GET (index) + 1 LIST + 2 HEADs + k GETs + 2 GETs and 2 PUTs of the views + 1 PUT of
the index (+ the lease's requests); a rebuild (``full``, an edited view, a new CSV column, a row
gone, replaced or out of order) n GETs instead of the k and the view GETs.

A store from before row files (a results.jsonl and no ``rows/``) is not migrated on an object
store (there never was one there); ``compact`` with no rows and no index leaves such a
results.jsonl alone. ``results.rejected.jsonl`` (an older store's bad lines) is never written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field

from harness.fileio import ROW_MAX_BYTES, VIEW_MAX_BYTES, StoredFileError, exclusive_lock, read_regular_bytes
from harness.objects import ObjectPath
from harness.results_views import NA, csv_cells, flatten_row, rows_csv_columns
from harness.row_files import (
    REASONS,
    UNREADABLE,
    RowScan,
    SetAside,
    TableLayout,
    check_row_data,
    check_row_file,
    create_row,
    row_json,
    row_text,
    summary,
)

logger = logging.getLogger(__name__)
FORMAT = "objects-1"
BATCH = 1000  # rows fetched per batch of concurrent GETs (bounds the memory of one batch)


@dataclass(frozen=True)
class Listed:
    """A row object as one LIST names it."""

    name: str
    etag: str
    mtime_ns: int

    @property
    def order(self) -> tuple[int, str]:
        return self.mtime_ns, self.name


@dataclass
class ObjectIndex:
    """What the last compaction put in the views (see the module doc)."""

    rows: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (ETag, LastModified ns)
    views: dict[str, str] = field(default_factory=dict)  # "jsonl" / "csv" -> ETag
    columns: list[str] = field(default_factory=list)
    root: str = ""

    @property
    def last(self) -> tuple[int, str] | None:
        return max(((m, n) for n, (_, m) in self.rows.items()), default=None)

    def to_bytes(self) -> bytes:
        rows = {n: list(v) for n, v in self.rows.items()}
        body = {"format": FORMAT, "root": self.root, "views": self.views, "columns": self.columns, "rows": rows}
        return json.dumps(body).encode()

    @staticmethod
    def parse(data: bytes) -> ObjectIndex | None:
        """The index these bytes hold, None when they are not one this module writes."""
        try:
            raw = json.loads(data)
            rows = {str(n): (str(e), int(m)) for n, (e, m) in raw["rows"].items()}
            views = {str(k): str(v) for k, v in raw["views"].items()}
            columns = [str(c) for c in raw["columns"]]
            root = str(raw["root"])
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None
        return ObjectIndex(rows, views, columns, root) if raw.get("format") == FORMAT else None


class ObjectResultsTable(TableLayout):
    """Rows of one experiment folder on an object store (``root``); see the module doc."""

    INDEX = "rows.index.json"

    # ------------------------------------------------------------------ write: 1 PUT + 1 GET
    def append(self, row: dict) -> bool:
        """Record ``row``: True once its object is created and read back as written; False when a
        valid row of that run is stored already (kept). Anything else under its key is set aside."""
        run_id, data = row_text(row)
        return create_row(self.row_path(run_id), data, self.set_aside)

    # ------------------------------------------------------------------ read
    def done_ids(self) -> set[str]:
        """Run ids that have a row (the sweep's done-lookup): one LIST; a row the index vouches
        for (same ETag) counts unread, any other is read and checked."""
        index, listed = self._index() or ObjectIndex(), self._listing()
        out = {x.name[:-5] for x in listed if index.rows.get(x.name, ("",))[0] == x.etag}
        unvouched = [x for x in listed if x.name[:-5] not in out]
        for _, found in self._fetch(unvouched):
            if isinstance(found, dict):
                out.add(found["run_id"])
        return out

    def ids(self) -> set[str]:
        """Run ids that have a valid row, every row read (``scan(trust=True)``)."""
        return {r["run_id"] for r in self.scan(trust=True).rows}

    def read(self) -> list[dict]:
        """Every valid row, each run once, in the order they were recorded; says what it skipped."""
        scan = self.scan(trust=True)
        if scan.set_aside:
            logger.warning(
                f"[store] skipped {len(scan.set_aside)} stored row(s) in {self.rows_dir} that are no valid row "
                f"({summary(scan.set_aside)}); `ckd leaderboard` sets them aside"
            )
        return scan.rows

    def scan(self, trust: bool = False) -> RowScan:
        """Every row object, each read and checked, nothing moved (the report's numbers come from
        here). ``trust=True``: a row whose bytes have the ETag the index vouches for is parsed,
        not checked again (see the module doc)."""
        return self.scan_checked(trust)

    def scan_checked(self, trust: bool = False) -> RowScan:
        """``scan`` (there are no journal lines to write on an object store)."""
        vouched = (self._index() or ObjectIndex()).rows if trust else {}
        scan = RowScan()
        for item, found in self._fetch(self._listing(), vouched):
            if isinstance(found, dict):
                scan.rows.append(found)
                scan.signatures[item.name] = f"{item.etag} {item.mtime_ns}"
            else:
                scan.set_aside.append(found)
        return scan

    def set_aside_counts(self, scan: RowScan | None = None) -> dict[str, int]:
        """How many rows were set aside, by reason: those in ``results/rejected/`` (one LIST) plus
        those of ``scan`` still in place."""
        counts: dict[str, int] = {}
        for item in (scan or RowScan()).set_aside:
            counts[item.reason] = counts.get(item.reason, 0) + 1
        try:
            keys = self.rejected_dir.fs.find(self.rejected_dir.key)
        except FileNotFoundError:
            keys = []
        for key in keys:
            reason, *rest = key[len(self.rejected_dir.key) + 1 :].split("/", 1)
            reason = reason if reason in REASONS and rest else UNREADABLE
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    # ------------------------------------------------------------------ compaction: O(new rows) GETs
    def compact(self, full: bool = False) -> int:
        """Bring results.jsonl + results.csv up to date with the valid rows (under the results
        lease), setting the others aside; returns the number of rows. Only the rows the index does
        not list are read when nothing else changed; else, or with ``full``, both views are rebuilt
        from every row, each read and checked again."""
        with exclusive_lock(self.lock_path):
            index, listed = self._index(), self._listing()
            appended = None if full or index is None else self._append_new(index, listed)
            return appended if appended is not None else self._rebuild(index, listed)

    def _append_new(self, index: ObjectIndex, listed: list[Listed]) -> int | None:
        """Add the rows not in ``index`` to the views; None when they must be rebuilt instead."""
        if index.root != str(self.root) or self.view_signatures() != index.views:
            return None
        by_name = {x.name: x for x in listed}
        if any((by_name[n].etag, by_name[n].mtime_ns) != v if n in by_name else True for n, v in index.rows.items()):
            return None  # an indexed row is gone or was rewritten
        rows, bad = _split(self._fetch([x for x in listed if x.name not in index.rows]))
        flat = [csv_cells(flatten_row(r), r, None) for _, r in rows]
        last = index.last
        if (rows and last is not None and rows[0][0].order <= last) or any(
            not set(f) <= set(index.columns) for f in flat
        ):
            return None
        self.set_aside(bad)
        if rows:
            jsonl = self._view_bytes(self.jsonl) + "".join(row_json(r) + "\n" for _, r in rows).encode()
            csv_text = _csv_lines(flat, index.columns)
            index.views = self._put_views(jsonl, self._view_bytes(self.csv) + csv_text.encode())
            index.rows |= {x.name: (x.etag, x.mtime_ns) for x, _ in rows}
            self.verified_path.put(index.to_bytes())
        return len(index.rows)

    def _rebuild(self, index: ObjectIndex | None, listed: list[Listed]) -> int:
        """Both views and the index from every row object, each checked; the bad set aside."""
        rows, bad = _split(self._fetch(listed))
        self.set_aside(bad)
        if not rows and index is None:
            return 0  # nothing was ever compacted here: an older results.jsonl is left alone
        text, columns = rows_csv_columns([r for _, r in rows], None)
        views = self._put_views("".join(row_json(r) + "\n" for _, r in rows).encode(), text.encode())
        new = ObjectIndex({x.name: (x.etag, x.mtime_ns) for x, _ in rows}, views, columns, str(self.root))
        self.verified_path.put(new.to_bytes())
        return len(rows)

    def _put_views(self, jsonl: bytes, csv: bytes) -> dict[str, str]:
        """PUT both views whole; their new ETags."""
        return {"jsonl": _put(self.jsonl, jsonl), "csv": _put(self.csv, csv)}

    def _view_bytes(self, path: ObjectPath) -> bytes:
        return read_regular_bytes(path, VIEW_MAX_BYTES, "results view")

    def view_signatures(self) -> dict[str, str | None]:
        """The views' ETags (one HEAD each), None for a view that is missing."""
        return {"jsonl": _etag(self.jsonl), "csv": _etag(self.csv)}

    def _taken(self, target: ObjectPath) -> bool:
        return target.is_file()

    def _move_aside(self, path: ObjectPath, target: ObjectPath) -> bool:
        """Copy, then delete, only while ``path`` still is the invalid object: a valid row written
        over it meanwhile is kept."""
        try:
            etag, found = path.stat().etag, check_row_file(path)
        except FileNotFoundError:
            return False  # set aside meanwhile by another process
        return not isinstance(found, dict) and path.move_if_unchanged(target, etag)

    # ------------------------------------------------------------------ helpers
    def _index(self) -> ObjectIndex | None:
        """The index (one GET); None when it is missing or unreadable (a rebuild follows)."""
        try:
            data = read_regular_bytes(self.verified_path, VIEW_MAX_BYTES, "verified rows index")
        except FileNotFoundError:
            return None
        except (StoredFileError, OSError) as e:
            logger.warning(f"[store] {str(e)[:300]}; the views are rebuilt")
            return None
        if (index := ObjectIndex.parse(data)) is None:
            logger.warning(f"[store] verified rows index {self.verified_path} is not one this harness writes; ignored")
        return index

    def _listing(self) -> list[Listed]:
        """The row objects, oldest first (LastModified, then name): one paged LIST."""
        try:
            entries = self.rows_dir.fs.ls(self.rows_dir.key, detail=True)
        except FileNotFoundError:
            return []
        out = []
        for e in entries:
            name = str(e["name"]).rstrip("/").rsplit("/", 1)[-1]
            if e.get("type") == "file" and name.endswith(".json") and not name.startswith("."):
                modified = e.get("LastModified") or e.get("mtime") or e.get("updated")
                ns = int(modified.timestamp() * 1e9) if hasattr(modified, "timestamp") else 0
                out.append(Listed(name, str(e.get("ETag") or e.get("etag") or e.get("generation") or ""), ns))
        return sorted(out, key=lambda x: x.order)

    def _fetch(self, listed: list[Listed], vouched: dict | None = None) -> list[tuple[Listed, dict | SetAside]]:
        """Each listed row read (concurrent ranged GETs, ``BATCH`` at a time) and checked, or parsed
        unchecked when ``vouched`` (name -> (ETag, _)) vouches for its bytes; gone ones left out."""
        out = []
        for at in range(0, len(listed), BATCH):
            batch = listed[at : at + BATCH]
            keys = [(self.rows_dir / x.name).key for x in batch]
            got = self.rows_dir.fs.cat_ranges(keys, 0, ROW_MAX_BYTES + 1, on_error="return")
            for x, data in zip(batch, got, strict=True):
                if isinstance(data, FileNotFoundError):
                    continue  # set aside meanwhile by a compaction
                out.append((x, self._checked(x, data, (vouched or {}).get(x.name, ("",))[0])))
        return out

    def _checked(self, x: Listed, data: bytes | BaseException, etag: str) -> dict | SetAside:
        path = self.rows_dir / x.name
        if isinstance(data, BaseException):
            return SetAside(path, UNREADABLE, f"result row object {path} cannot be read ({str(data)[:80]})")
        if len(data) > ROW_MAX_BYTES:
            return SetAside(path, UNREADABLE, f"result row object {path} is larger than {ROW_MAX_BYTES} bytes")
        if etag and etag == x.etag and _md5_etag(data) == etag:
            row = _parsed(data)
            if row is not None:
                return row
        return check_row_data(data, path)


def _split(fetched: list[tuple[Listed, dict | SetAside]]) -> tuple[list[tuple[Listed, dict]], list[SetAside]]:
    rows = [(x, f) for x, f in fetched if isinstance(f, dict)]
    return rows, [f for _, f in fetched if isinstance(f, SetAside)]


def _csv_lines(flat: list[dict], columns: list[str]) -> str:
    """The CSV lines (no header) of flat rows under ``columns``."""
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=columns, restval=NA).writerows(flat)
    return buf.getvalue()


def _put(path: ObjectPath, data: bytes) -> str:
    """One PUT of the whole object; its new ETag (from the answer, else one HEAD)."""
    answer = path.fs.pipe_file(path.key, data)
    tag = answer.get("ETag") if isinstance(answer, dict) else None
    return str(tag) if tag else str(path.stat().etag)


def _etag(path: ObjectPath) -> str | None:
    try:
        return path.stat().etag
    except (FileNotFoundError, IsADirectoryError):
        return None


def _md5_etag(data: bytes) -> str:
    """S3's ETag of an object written in one PUT: its MD5, quoted."""
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def _parsed(data: bytes) -> dict | None:
    try:
        row = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return row if isinstance(row, dict) else None
