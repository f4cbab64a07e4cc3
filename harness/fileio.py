"""Durable, safe file primitives shared by the store and the data cache.

- ``atomic_write``: temp file in the target folder, fsync, rename, then fsync of the folder, so
  a reader sees the old file or the whole new one, and a crash right after the rename keeps it.
- ``remove_stale_temps``: temp files left by a killed writer are removed when the stage that
  owns the folder next starts (under that stage's lock, so no live writer is touched).
- ``safe_torch_load``: ``torch.load(weights_only=True)``: tensors and plain data only; a planted
  pickle that would run code is refused with a ``UnsafeFileError`` naming the file.
- ``exclusive_lock``: an advisory ``flock`` on a lock file; the OS releases it when its holder
  dies, so a crashed process never blocks the next one.
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
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

logger = logging.getLogger(__name__)
TEMP_SUFFIX = ".tmp"


class UnsafeFileError(RuntimeError):
    """A file holds something other than tensors and plain data (refused, never unpickled)."""


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


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None], mode: int = 0o644) -> None:
    """Create ``path`` atomically: ``write(fh)`` fills a temp file that is then renamed onto it."""
    path = Path(path)
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
    name, which fails if the name exists (never overwrites; safe on NFS). Returns whether created."""
    path = Path(path)
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
    """Hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_stale_temps(folder: Path) -> int:
    """Delete ``.<name>.*.tmp`` files that ``atomic_write`` left behind in ``folder`` (not below)."""
    removed = 0
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
    ``waiting(holder)`` once and wait. The lock dies with its holder (the OS releases it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            fh.seek(0)
            if waiting is not None:
                waiting(fh.read().strip() or "another process")
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    time.sleep(poll_s)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
