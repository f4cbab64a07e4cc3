"""Durable, safe file primitives shared by the store and the data cache.

- ``atomic_write``: temp file in the target folder, fsync, rename, then fsync of the folder, so
  a reader sees the old file or the whole new one, and a crash right after the rename keeps it.
- ``remove_stale_temps``: temp files left by a killed writer are removed when the stage that
  owns the folder next starts (under that stage's lock, so no live writer is touched).
- ``safe_torch_load``: ``torch.load(weights_only=True)``: tensors and plain data only; a planted
  pickle that would run code is refused with a ``UnsafeFileError`` naming the file.
- ``exclusive_lock``: an advisory ``flock`` on a lock file; the OS releases it when its holder
  dies, so a crashed process never blocks the next one.
- ``open_regular`` / ``read_regular_bytes`` / ``read_regular_text``: files the harness opens in a
  shared store are opened without following a symlink (``O_NOFOLLOW``), without blocking on a FIFO
  (``O_NONBLOCK``), and used only when ``fstat`` says they are one regular file of bounded size;
  anything else raises ``StoredFileError`` naming the file and what to do. Someone with write
  access to ``storage`` can thus neither redirect a write outside it nor hang or exhaust a reader.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import pickle
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from harness.objects import ObjectPath

logger = logging.getLogger(__name__)
TEMP_SUFFIX = ".tmp"


class UnsafeFileError(RuntimeError):
    """A file holds something other than tensors and plain data (refused, never unpickled)."""


class StoredFileError(ValueError):
    """A stored file that is not one regular file of sane size and encoding: a symlink, FIFO,
    device or folder where a file belongs, too large, not UTF-8, not JSON. The message names the
    file and what to do. (A ``ValueError``: callers that leave unreadable files out catch it.)"""


MiB = 2**20
ROW_MAX_BYTES = 1 * MiB  # one result row (a few KiB in practice)
JSON_MAX_BYTES = 64 * MiB  # manifests, scores files, state files read as JSON
VIEW_MAX_BYTES = 1024 * MiB  # results.jsonl: every row of a very large sweep
_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def _not_a_file(path: Path, what: str, kind: str) -> StoredFileError:
    return StoredFileError(
        f"{what} {path} is {kind}, not a regular file, so it was not used; "
        f"remove it (rm {path}) and re-run (the harness recreates what it needs)"
    )


def open_regular(
    path: str | os.PathLike[str], flags: int, what: str = "file", mode: int = 0o644, single_link: bool = False
) -> int:
    """A file descriptor of ``path`` opened with ``flags`` | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
    checked (``fstat``) to be a regular file: a symlink, FIFO, device or folder is refused with
    ``StoredFileError`` (and never read or written). ``single_link`` (files we write to: locks,
    logs) also refuses a hard link, which could be another name of a file outside storage. The
    descriptor is back in blocking mode; the caller closes it."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _not_a_file(path, what, _KINDS[stat.S_IFLNK]) from None
        if e.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO without a reader (write-only), a folder
            raise _not_a_file(path, what, "a FIFO (named pipe)" if e.errno == errno.ENXIO else "a folder") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_a_file(path, what, _KINDS.get(stat.S_IFMT(st.st_mode), "not a file"))
        if single_link and st.st_nlink > 1:
            raise _not_a_file(path, what, f"a hard link ({st.st_nlink} names for one file)")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_bytes(path: str | os.PathLike[str], max_bytes: int, what: str = "file") -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes`` (``open_regular``);
    ``StoredFileError`` naming it otherwise. Never blocks and never reads more than the cap.
    An object (``ObjectPath``) is one ranged GET of at most the cap plus one byte."""
    if isinstance(path, ObjectPath):
        data = path.read_bytes(max_bytes)
        if len(data) > max_bytes:
            raise _too_large(path, what, max_bytes)
        return data
    path = Path(path)
    fd = open_regular(path, os.O_RDONLY, what)
    try:
        if os.fstat(fd).st_size > max_bytes:
            raise _too_large(path, what, max_bytes)
        chunks, total = [], 0
        while chunk := os.read(fd, min(MiB, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # grew while we read
                raise _too_large(path, what, max_bytes)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_large(path: Path, what: str, max_bytes: int) -> StoredFileError:
    return StoredFileError(
        f"{what} {path} is larger than {max_bytes // MiB} MiB, more than this harness ever writes there, "
        f"so it was not read; move it away (it was not written by this harness or was damaged) and re-run"
    )


def read_regular_text(path: str | os.PathLike[str], max_bytes: int, what: str = "file", fix: str = "") -> str:
    """``read_regular_bytes`` decoded as UTF-8; text that is not UTF-8 is a ``StoredFileError``
    naming the file and ``fix`` (what to do)."""
    data = read_regular_bytes(path, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StoredFileError(
            f"{what} {path} is not UTF-8 text (byte {e.start}), so it is damaged or not written by this harness; "
            f"{fix or 'move it away (or delete it) and re-run'}"
        ) from None


def read_json_object(path: str | os.PathLike[str], max_bytes: int, what: str = "file", fix: str = "") -> dict:
    """The JSON object stored at ``path`` (``read_regular_text``); a file that is not JSON, or
    JSON that is not an object, is a ``StoredFileError`` naming it and ``fix`` (what to do)."""
    fix = fix or "move it away (or delete it) and re-run"
    text = read_regular_text(path, max_bytes, what, fix)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise StoredFileError(f"{what} {path} is not valid JSON ({e}); {fix}") from None
    except RecursionError:
        raise StoredFileError(f"{what} {path} nests JSON too deeply to be a file of this harness; {fix}") from None
    if not isinstance(value, dict):
        raise StoredFileError(f"{what} {path} holds a JSON {type(value).__name__}, not an object; {fix}")
    return value


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where the filesystem cannot)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def naming_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """An ``OSError`` that names no file (a ``write`` on a full disk, over the file-size limit)
    is re-raised naming ``path``, so the one-line error says which file could not be written."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None], mode: int = 0o644) -> None:
    """Create ``path`` atomically: ``write(fh)`` fills a temp file that is then renamed onto it.
    A failed write (disk full, file too large) leaves no temp file and raises naming ``path``.
    An object is written in one PUT (whole or not at all, see ``harness/objects.py``)."""
    if isinstance(path, ObjectPath):
        buf = io.BytesIO()
        write(buf)
        path.put(buf.getvalue())
        return
    path = Path(path)
    with naming_errors(path):
        _atomic_write(path, write, mode)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None], mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.chmod(tmp, mode)  # mkstemp makes 0600; stores and caches may be shared between users
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_create(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> bool:
    """Create ``path`` with ``data`` atomically and exclusively: a temp file hard-linked to its
    name, which fails if the name exists (never overwrites; safe on NFS). Returns whether created.
    An object is created by a conditional PUT that the server refuses if the key exists."""
    if isinstance(path, ObjectPath):
        return path.put_if_absent(data)
    path = Path(path)
    with naming_errors(path):
        return _atomic_create(path, data, mode)


def _atomic_create(path: Path, data: bytes, mode: int) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the regular file at ``path``, read in 1 MiB chunks (``open_regular``: a FIFO
    or a link to a device is a ``StoredFileError``, never an endless read)."""
    if isinstance(path, ObjectPath):
        return sha256_bytes(path.read_bytes())
    h = hashlib.sha256()
    with open(open_regular(path, os.O_RDONLY, "file"), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_stale_temps(folder: Path) -> int:
    """Delete ``.<name>.*.tmp`` files that ``atomic_write`` left behind in ``folder`` (not below)."""
    removed = 0
    if isinstance(folder, ObjectPath):  # an object is never half written: no temps to remove
        return 0
    if not folder.is_dir():
        return 0
    for p in folder.glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed += 1
    if removed:
        logger.info(f"[store] removed {removed} temp file(s) left by an interrupted write in {folder}")
    return removed


def safe_torch_load(source: Path | bytes, map_location: Any = "cpu", what: str = "") -> Any:
    """``torch.load(..., weights_only=True)``; anything that would need arbitrary unpickling
    raises ``UnsafeFileError`` (the payload is never executed)."""
    name = what or (str(source) if isinstance(source, Path) else "file")
    buf = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        return torch.load(buf, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsafeFileError(
            f"{name} holds objects other than tensors and plain data, so it was not loaded "
            f"(safe loader: {first[:200]}). It was not written by this harness or was tampered with; "
            "delete it (or re-run with --restart) to start that work over"
        ) from None


@contextlib.contextmanager
def exclusive_lock(path: Path, waiting: Callable[[str], None] | None = None, poll_s: float = 0.5) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block; if another process holds it, call
    ``waiting(holder)`` once and wait. The lock dies with its holder (the OS releases it).

    The lock file is opened with ``open_regular`` (no symlink, FIFO, device or hard link: refused
    before anything is written) and never truncated on open; only once held is our own regular
    lock file rewritten with the holder's identity.

    On an object store (``ObjectPath``) the lock is a lease object with an expiry, renewed while
    held (``harness/object_leases.py``): a holder that dies lets it expire."""
    if isinstance(path, ObjectPath):
        from harness.object_leases import object_lease

        with object_lease(path, waiting, poll_s):
            yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_regular(path, os.O_RDWR | os.O_CREAT, "lock file", single_link=True)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if waiting is not None:
                waiting(os.pread(fd, 256, 0).decode("utf-8", "replace").strip() or "another process")
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    time.sleep(poll_s)
        holder = f"pid {os.getpid()} on {os.uname().nodename}".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder, 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
