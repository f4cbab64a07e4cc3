"""A bounded node-local cache of immutable blobs fetched from an object store, keyed by sha256.

On an object store every node would GET the same checkpoints again and again (every trial that
loads a teacher). ``BlobCache.get`` keeps each blob once per node, at ``<root>/<sha[:2]>/<sha>``:

- Verified on every read: a local entry is used only if its bytes hash to the sha256 the caller
  knows (the manifest's); a corrupt entry is deleted, with a warning, and fetched again.
- Verified on every fetch: downloaded bytes that do not hash to it raise ``BlobMismatch`` and are
  not cached (the caller says what that means, e.g. a ``StoreError`` for a checkpoint).
- Bounded: entries are written atomically (``atomic_write_bytes``), a hit touches the entry's mtime,
  and after a put the least recently used entries are deleted until the total fits ``max_bytes``;
  a blob larger than the bound is returned but not kept.
- Shared: processes on one node may use one folder; atomic writes keep entries whole, and a race
  with another process's eviction only costs a refetch. A cache that cannot be written (disk full,
  read-only) never fails the read: the blob is returned, with a warning.

``get_named`` keeps blobs whose content hash is not known before reading, keyed by the sha256 of
their object's name (the teacher-logit tables: the name holds the checkpoint's sha256, the data
key and the split, which fix the table; the caller verifies every table it reads against those
and the tensors' own sha256, and calls ``drop_named`` to fetch a bad copy again).

``default_cache()`` is the cache at ``CKD_OBJECT_CACHE`` (default ``$CKD_NODE_CACHE/objects``,
``~/.cache/ckd-harness/objects``) bounded by ``CKD_OBJECT_CACHE_GB`` (GiB, default 8).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

from harness.fileio import StoredFileError, atomic_write_bytes, read_regular_bytes, sha256_bytes
from harness.objects import Location, node_local_dir

logger = logging.getLogger(__name__)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_GB = 8.0
GiB = 2**30
_CACHES: dict[tuple[Path, int], BlobCache] = {}


class BlobMismatch(ValueError):
    """A fetched blob does not hash to the sha256 it was asked for (changed or corrupt); not cached."""


class BlobCache:
    """Blobs by sha256 under ``root``, at most ``max_bytes`` in all; see the module doc."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root, self.max_bytes = Path(root).expanduser(), int(max_bytes)
        self.hits = self.misses = self.bytes_fetched = 0

    def entry_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def get(self, source: Location, sha256: str, max_bytes: int, what: str = "blob") -> bytes:
        """The bytes of ``source``, which must hash to ``sha256``: from the local entry when it is
        intact, else one capped GET of ``source`` (then kept). ``BlobMismatch`` if the fetched bytes
        do not hash to ``sha256``; ``FileNotFoundError`` / ``StoredFileError`` as the GET raises them."""
        if not SHA256.match(sha256):
            raise BlobMismatch(f"{what} {source}: {sha256[:80]!r} is not a sha256 hex digest, so it cannot be verified")
        return self._get(source, sha256, max_bytes, what, verify=True)

    def get_named(self, source: Location, max_bytes: int, what: str = "blob") -> bytes:
        """The bytes of ``source`` from the entry keyed by the sha256 of its name (kept after one
        capped GET); the caller verifies them (see the module doc) and ``drop_named`` a bad copy."""
        return self._get(source, sha256_bytes(str(source).encode()), max_bytes, what, verify=False)

    def drop_named(self, source: Location) -> None:
        """Forget the local copy of ``source`` (it failed the caller's verification)."""
        with contextlib.suppress(OSError):
            self.entry_path(sha256_bytes(str(source).encode())).unlink()

    def _get(self, source: Location, key: str, max_bytes: int, what: str, verify: bool) -> bytes:
        """The entry ``key`` if intact, else one capped GET of ``source`` (then kept); with
        ``verify`` the bytes must hash to ``key``."""
        local = self._read_entry(key, max_bytes, what, verify)
        if local is not None:
            self.hits += 1
            return local
        data = read_regular_bytes(source, max_bytes, what)
        self.misses += 1
        self.bytes_fetched += len(data)
        if verify and (got := sha256_bytes(data)) != key:
            raise BlobMismatch(
                f"{what} {source} hashes to {got[:12]}..., not its recorded sha256 {key[:12]}... "
                "(changed or corrupt); it was not used or cached"
            )
        self._put(key, data)
        return data

    def _read_entry(self, key: str, max_bytes: int, what: str, verify: bool) -> bytes | None:
        """The local entry's bytes if present and intact (mtime touched: recently used); a damaged
        entry is deleted with a warning and None returned."""
        path = self.entry_path(key)
        try:
            data = read_regular_bytes(path, max_bytes, f"cached {what}")
        except FileNotFoundError:
            return None
        except (OSError, StoredFileError) as e:
            return self._drop(path, f"is unreadable ({str(e).split(';')[0]})")
        if verify and sha256_bytes(data) != key:
            return self._drop(path, "does not hash to its name (corrupt)")
        with contextlib.suppress(OSError):  # LRU by mtime; another process may have evicted it
            os.utime(path)
        return data

    def _drop(self, path: Path, why: str) -> None:
        logger.warning(f"[cache] {path} {why}; deleted it and fetching it again")
        with contextlib.suppress(OSError):
            path.unlink()

    def _put(self, sha256: str, data: bytes) -> None:
        """Keep ``data`` (if it fits the bound), then evict down to the bound; failures only warn."""
        if len(data) > self.max_bytes:
            logger.debug(f"[cache] {sha256[:12]} ({len(data)} bytes) exceeds the cache bound; not kept")
            return
        path = self.entry_path(sha256)
        try:
            atomic_write_bytes(path, data)
            self.evict(keep=path)
        except OSError as e:
            logger.warning(f"[cache] cannot write {path} ({e}); the blob was used but not cached")

    def entries(self) -> list[tuple[int, Path, int]]:
        """(mtime_ns, path, size) of every entry (temp files of live writers left out)."""
        out = []
        for path in self.root.glob("??/*"):
            if SHA256.match(path.name) and path.name.startswith(path.parent.name):
                with contextlib.suppress(FileNotFoundError):
                    st = path.lstat()
                    out.append((st.st_mtime_ns, path, st.st_size))
        return out

    def total_bytes(self) -> int:
        return sum(size for _, _, size in self.entries())

    def evict(self, keep: Path | None = None) -> int:
        """Delete least recently used entries (never ``keep``) until the total is at most the
        bound; returns how many were deleted."""
        entries = sorted(self.entries())
        total = sum(size for _, _, size in entries)
        removed = 0
        for _, path, size in entries:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):  # another process evicted it first
                path.unlink()
                removed += 1
            total -= size
        return removed


def cache_bound_bytes() -> int:
    """``CKD_OBJECT_CACHE_GB`` (GiB, float; default 8) in bytes; a bad value is a one-line error."""
    text = os.environ.get("CKD_OBJECT_CACHE_GB", "").strip()
    try:
        gb = float(text) if text else DEFAULT_GB
    except ValueError:
        gb = -1.0
    if not gb >= 0:  # also NaN
        raise ValueError(f"CKD_OBJECT_CACHE_GB={text!r} is not a size in GiB; set it to a number >= 0, e.g. 8")
    return int(gb * GiB)


def default_cache() -> BlobCache:
    """This node's cache: ``CKD_OBJECT_CACHE`` bounded by ``CKD_OBJECT_CACHE_GB``, read on every
    call; one instance per (folder, bound), so its counters add up within a process."""
    root = Path(os.environ.get("CKD_OBJECT_CACHE") or node_local_dir("objects")).expanduser()
    key = (root, cache_bound_bytes())
    if key not in _CACHES:
        _CACHES[key] = BlobCache(*key)
    return _CACHES[key]
