"""Object-store locations: ``storage=s3://bucket/prefix`` (or ``gs://``, any fsspec URI).

``storage_location(storage)`` is a ``pathlib.Path`` for a folder and an ``ObjectPath`` for a URI.
``ObjectPath`` has the small part of the ``Path`` API the store uses (``/``, ``name``, ``parent``,
``exists``, ``is_file``, ``iterdir``, ``glob``, ``unlink``; ``mkdir`` is a no-op: an object store
has no folders), so the store's code reads the same on both, and the object primitives the
guarantees rest on:

- ``put``: one PUT. S3 and GCS make a PUT visible whole or not at all (a multipart upload only
  when it completes), so a reader never sees a half-written object: the commit is the final PUT.
- ``put_if_absent``: a conditional create (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``),
  refused by the server if the key exists: a duplicate result row cannot be written, even by two
  nodes at once.
- ``put_if_match``: a compare-and-swap on the object's ETag (S3 ``If-Match``): a lease is taken
  over or renewed only by one writer (``harness/object_leases.py``).
- ``read_bytes``: one ranged GET of at most ``max_bytes + 1`` bytes, so an oversized object is
  refused without being downloaded.

An ``ObjectPath`` has no ``__fspath__``: code that would open it as a local file fails loudly
instead of writing a folder named ``s3:``. Credentials and the endpoint come from the standard
provider chains (``AWS_*`` environment variables, ``~/.aws``, instance roles; ``AWS_ENDPOINT_URL``
for MinIO or another S3 API; ``GOOGLE_APPLICATION_CREDENTIALS`` for GCS). ``REQUESTS`` counts the
HTTP requests this process sent to S3 (for the benchmarks and ``ckd`` progress).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
URI = re.compile(r"^([a-z][a-z0-9+.-]*)://(.*)$")
ATOMIC_CREATE = {"s3", "s3a", "gs", "gcs"}  # protocols whose servers refuse a conditional create atomically
REQUESTS: Counter[str] = Counter()  # HTTP requests sent, by operation name (S3 only)
_FILESYSTEMS: dict[tuple[str, int], Any] = {}


class ObjectStoreError(RuntimeError):
    """The object store cannot be used (no client installed, unknown protocol); says how to fix it."""


def storage_location(storage: str | os.PathLike[str]) -> Path | ObjectPath:
    """``storage`` as a ``Path`` (a folder, ``file://`` included) or an ``ObjectPath`` (a URI)."""
    text = str(storage)
    match = URI.match(text)
    if match is None:
        return Path(text).expanduser()
    protocol, rest = match.groups()
    if protocol == "file":
        return Path(rest).expanduser()
    rest = rest.strip("/")
    if not rest:
        raise ObjectStoreError(f"storage={text!r} names no bucket; use {protocol}://BUCKET/PREFIX")
    return ObjectPath(protocol, rest)


def filesystem(protocol: str) -> Any:
    """The fsspec filesystem of ``protocol`` for this process (listings never cached: every
    listing is fresh, another node may have written since)."""
    key = (protocol, os.getpid())
    if key not in _FILESYSTEMS:
        import fsspec

        try:
            fs = fsspec.filesystem(protocol, use_listings_cache=False, skip_instance_cache=True)
        except ImportError as e:
            extra = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}.get(protocol)
            hint = f"pip install 'ckd-harness[{extra}]'" if extra else f"install the fsspec package for {protocol}://"
            raise ObjectStoreError(
                f"storage uses {protocol}:// but its client is not installed ({e}); {hint}"
            ) from None
        except ValueError as e:
            raise ObjectStoreError(f"storage uses {protocol}://, which fsspec does not know ({e})") from None
        if protocol in ("gs", "gcs"):
            logger.warning(
                "[store] gs://: result rows are created atomically (ifGenerationMatch=0), but a lease is taken "
                "over by check-then-write (no compare-and-swap through fsspec yet): two nodes could both take "
                "an expired lease; a run trained twice still gets one row"
            )
        if protocol not in ATOMIC_CREATE:
            logger.warning(
                f"[store] {protocol}:// has no conditional create that this harness knows to be atomic: "
                "two writers of one result row or lease could both succeed; use s3:// or gs:// on a cluster"
            )
        _count_requests(fs)
        _FILESYSTEMS[key] = fs
    return _FILESYSTEMS[key]


def _count_requests(fs: Any) -> None:
    """Count every HTTP request an s3fs client sends (botocore's ``before-send`` event)."""
    if type(fs).__name__ != "S3FileSystem":
        return
    try:
        fs.connect()
        fs.s3.meta.events.register("before-send.s3", _counted)
    except Exception as e:  # counting is for benchmarks; never stop a run over it
        logger.debug(f"[store] cannot count S3 requests: {e}")


def _counted(event_name: str = "", **_: Any) -> None:
    REQUESTS[event_name.rsplit(".", 1)[-1] or "request"] += 1


@dataclass(frozen=True)
class ObjectStat:
    """What a HEAD says of an object (the fields of ``os.stat_result`` the store reads, and the ETag)."""

    st_size: int
    st_mtime_ns: int
    etag: str
    st_mode: int = 0o100644  # a regular file: objects are never links, FIFOs or devices
    st_ino: int = 0
    st_nlink: int = 1


class ObjectPath:
    """A key in an object store, ``protocol://bucket/key``; see the module doc."""

    __slots__ = ("protocol", "key")

    def __init__(self, protocol: str, key: str) -> None:
        self.protocol, self.key = protocol, key.strip("/")

    # ------------------------------------------------------------------ naming (no requests)
    def __truediv__(self, other: str | os.PathLike[str]) -> ObjectPath:
        part = str(other).strip("/")
        if part in ("", ".", "..") or "/.." in f"/{part}":
            raise ValueError(f"{part!r} cannot name an object under {self}")
        return ObjectPath(self.protocol, f"{self.key}/{part}")

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0] if "." in self.name[1:] else self.name

    @property
    def suffix(self) -> str:
        return "." + self.name.rsplit(".", 1)[1] if "." in self.name[1:] else ""

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.protocol, self.key.rsplit("/", 1)[0]) if "/" in self.key else self

    def with_suffix(self, suffix: str) -> ObjectPath:
        return self.parent / (self.stem + suffix)

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def expanduser(self) -> ObjectPath:
        return self

    def resolve(self) -> ObjectPath:
        return self

    def __str__(self) -> str:
        return f"{self.protocol}://{self.key}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and (self.protocol, self.key) == (other.protocol, other.key)

    def __lt__(self, other: ObjectPath) -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash((self.protocol, self.key))

    @property
    def fs(self) -> Any:
        return filesystem(self.protocol)

    # ------------------------------------------------------------------ reads
    def stat(self) -> ObjectStat:
        """One HEAD; ``FileNotFoundError`` when there is no such object (on S3 a missing key costs
        that HEAD only: fsspec's ``info`` would LIST the prefix too, to find a "directory")."""
        if self.protocol in ("s3", "s3a"):
            bucket, _, key = self.key.partition("/")
            out = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
            return ObjectStat(int(out["ContentLength"]), _ns(out.get("LastModified")), str(out.get("ETag") or ""))
        info = self.fs.info(self.key)
        if info.get("type") != "file":
            raise IsADirectoryError(0, "a prefix, not an object", str(self))
        modified = info.get("LastModified") or info.get("mtime") or info.get("updated")
        tag = info.get("ETag") or info.get("etag") or info.get("generation") or info.get("md5Hash") or ""
        return ObjectStat(int(info.get("size") or 0), _ns(modified), str(tag))

    lstat = stat

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def is_file(self) -> bool:
        try:
            self.stat()
            return True
        except (FileNotFoundError, IsADirectoryError):
            return False

    def is_dir(self) -> bool:
        """Whether any object lies under this prefix (one LIST of at most one key)."""
        if self.protocol in ("s3", "s3a"):
            bucket, _, key = self.key.partition("/")
            try:
                out = self.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key + "/", MaxKeys=1)
            except FileNotFoundError:
                return False
            return bool(out.get("KeyCount") or out.get("Contents"))
        try:
            return bool(self.fs.ls(self.key, detail=False))
        except FileNotFoundError:
            return False

    def is_symlink(self) -> bool:
        return False

    def iterdir(self) -> Iterator[ObjectPath]:
        """The objects and prefixes directly under this one (a fresh, paged LIST)."""
        try:
            names = self.fs.ls(self.key, detail=False)
        except FileNotFoundError:
            return iter(())
        own = self.key + "/"
        children = sorted({n.rstrip("/")[len(own) :].split("/", 1)[0] for n in names if n.startswith(own)})
        return iter([self / c for c in children if c])

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """The children whose names match ``pattern`` (one level, like ``Path.glob('*.json')``)."""
        if "/" in pattern or "**" in pattern:
            raise ValueError(f"ObjectPath.glob takes one-level patterns, not {pattern!r}")
        return iter([p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern)])

    def read_bytes(self, max_bytes: int | None = None) -> bytes:
        """The object's bytes; with ``max_bytes``, one ranged GET of at most ``max_bytes + 1``
        bytes (the caller refuses a longer answer). ``FileNotFoundError`` when there is none."""
        if max_bytes is None:
            return self.fs.cat_file(self.key)
        try:
            return self.fs.cat_file(self.key, start=0, end=max_bytes + 1)
        except OSError as e:  # a ranged GET of an empty object is answered 416 (InvalidRange)
            if "range" in str(e).lower() and self.stat().st_size == 0:
                return b""
            raise

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    # ------------------------------------------------------------------ writes
    def mkdir(self, parents: bool = False, exist_ok: bool = False, mode: int = 0o777) -> None:
        """Nothing: an object store has no folders (a prefix exists once an object is under it)."""

    def put(self, data: bytes) -> None:
        """Write the whole object in one PUT: readers see the old object or the whole new one."""
        self.fs.pipe_file(self.key, bytes(data))

    write_bytes = put

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.put(text.encode(encoding))

    def put_if_absent(self, data: bytes) -> bool:
        """Create the object only if no object has this key (a conditional PUT the server checks);
        True if created, False if the key exists."""
        return self.create(data) is not None

    def create(self, data: bytes) -> str | None:
        """``put_if_absent`` returning the new object's ETag ("" where the client does not say
        it), or None when the key exists."""
        for attempt in range(6):
            try:
                out = self.fs.pipe_file(self.key, bytes(data), mode="create")
            except FileExistsError:
                return None
            except OSError as e:
                text = str(e).lower().replace("-", "")
                if "precondition" in text and self.is_file():
                    return None
                if "conflict" not in text or attempt == 5:
                    raise
                # 409 ConditionalRequestConflict: another conditional write of this key is in flight
                time.sleep(0.05 * 2**attempt)
                continue
            return _etag_of(out)
        return None  # (not reached)

    def put_if_match(self, data: bytes, etag: str) -> bool:
        """Replace the object only if its ETag is still ``etag`` (S3 ``If-Match``; a conditional
        replace the server checks); False if another writer replaced it (or it is gone)."""
        return self.swap(data, etag) is not None

    def swap(self, data: bytes, etag: str) -> str | None:
        """``put_if_match`` returning the new object's ETag ("" where the client does not say
        it), or None when the object is no longer ``etag``."""
        if self.protocol not in ("s3", "s3a"):
            return "" if self._put_if_match_racy(data, etag) else None
        try:
            out = self.fs.pipe_file(self.key, bytes(data), IfMatch=etag)
        except FileNotFoundError:
            return None
        except OSError as e:
            text = str(e).lower().replace("-", "")
            if "precondition" in text or "conflict" in text or "412" in text:
                return None
            raise
        return _etag_of(out)

    def _put_if_match_racy(self, data: bytes, etag: str) -> bool:
        try:
            if self.stat().etag != etag:
                return False
        except FileNotFoundError:
            return False
        self.put(data)
        return True

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def move_if_unchanged(self, target: ObjectPath, etag: str) -> bool:
        """Copy to ``target`` and delete this one, only while it is still the object of ``etag``
        (checked before the copy and again before the delete, so an object written over it
        meanwhile, e.g. a valid row, is kept); False when it changed or is gone."""
        try:
            if self.stat().etag != etag:
                return False
            self.fs.copy(self.key, target.key)
            if self.stat().etag != etag:
                target.unlink(missing_ok=True)
                return False
        except FileNotFoundError:
            return False
        self.unlink(missing_ok=True)
        return True


Location = Path | ObjectPath


def _ns(modified: Any) -> int:
    """Nanoseconds since the epoch of a LastModified / mtime value (0 when unknown)."""
    return int(modified.timestamp() * 1e9) if hasattr(modified, "timestamp") else 0


def _etag_of(response: Any) -> str:
    """The ETag a PUT's response names (s3fs returns the response of a single PUT), else ""."""
    return str(response.get("ETag") or "") if isinstance(response, dict) else ""


def location(value: str | os.PathLike[str] | ObjectPath) -> Path | ObjectPath:
    """``value`` as a store location: an ``ObjectPath`` stays one, anything else is a ``Path``
    (a URI string becomes an ``ObjectPath``)."""
    if isinstance(value, ObjectPath):
        return value
    return storage_location(value)


def node_local_dir(name: str) -> Path:
    """A folder on this node for what an object store cannot hold as files (generated data sets,
    W&B's offline files before upload, the checkpoint cache): ``$CKD_NODE_CACHE/<name>``
    (default ``~/.cache/ckd-harness``)."""
    return Path(os.environ.get("CKD_NODE_CACHE") or "~/.cache/ckd-harness").expanduser() / name


def tune_storage(root: Path | ObjectPath) -> tuple[str, Any]:
    """``(storage_path, storage_filesystem)`` for Ray Tune's ``RunConfig``: a folder as it is, an
    object prefix through this module's fsspec client (pyarrow's ``FSSpecHandler``), so Tune's
    experiment state uses the same endpoint and credentials as the store."""
    if isinstance(root, Path):
        return str(root), None
    import pyarrow.fs

    return root.key, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(root.fs))
