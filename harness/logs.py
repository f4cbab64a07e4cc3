"""Logging set-up: every module logs to ``logging.getLogger(__name__)``; this configures them once.

The CLI calls ``setup_logging(verbosity)`` (``-v`` debug, ``-q`` warnings only) and adds a
per-stage log file with ``file_log``; Ray workers (trajectory actors, the scorer, Tune trials)
use ``file_log`` to send a trajectory's or a trial's lines to its own file. Console lines go to
stderr and through ``tqdm.write`` while a progress bar is drawn, so bars and lines never tear.
On an object store (``storage=s3://...``) a log cannot be appended to: ``ObjectLog`` writes each
``file_log`` block as a new object of its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from harness.fileio import atomic_create, atomic_write_bytes, open_regular
from harness.objects import ObjectPath, location
from harness.progress import bars_active

ROOT = "harness"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TAG = "_ckd_console"
UPLOAD_EVERY_S = 60.0  # how often a log on an object store is uploaded while its block runs
_state = {"verbosity": 0}


def verbose() -> bool:
    """Did the user ask for more detail (``-v``)? Then Ray's and Tune's own banners stay on."""
    return _state["verbosity"] > 0


class ConsoleFormatter(logging.Formatter):
    """Plain messages for INFO (they carry their own ``[stage]`` tag); a level prefix otherwise."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


class ConsoleHandler(logging.StreamHandler):
    """A stream handler that writes through tqdm while bars are on screen."""

    def emit(self, record: logging.LogRecord) -> None:
        if not bars_active():
            return super().emit(record)
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@contextlib.contextmanager
def console_logging(verbosity: int = 0, stream=None) -> Iterator[logging.Logger]:
    """``setup_logging`` for the duration of a block; the console handler is removed afterwards
    (``ckd`` called in-process, e.g. by tests, leaves no handler on a closed stream behind)."""
    before = _state["verbosity"]
    log = setup_logging(verbosity, stream)
    try:
        yield log
    finally:
        _state["verbosity"] = before
        for h in [h for h in log.handlers if getattr(h, _TAG, False)]:
            log.removeHandler(h)


def setup_logging(verbosity: int = 0, stream=None) -> logging.Logger:
    """Configure the ``harness`` logger: console handler at INFO (+1: DEBUG, -1: WARNING).

    Idempotent: a second call replaces the console handler (in-process CLI calls, tests).
    """
    _state["verbosity"] = verbosity
    log = logging.getLogger(ROOT)
    for h in [h for h in log.handlers if getattr(h, _TAG, False)]:
        log.removeHandler(h)
    handler = ConsoleHandler(stream or sys.stderr)
    setattr(handler, _TAG, True)
    handler.setFormatter(ConsoleFormatter("%(message)s"))
    handler.setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)  # files get INFO even with -q
    return log


class LogFileHandler(logging.StreamHandler):
    """Appends records to a log file in the store, opened with ``open_regular``: a symlink, FIFO,
    device or hard link planted as the log is refused (``StoredFileError``), never followed or
    appended to. A failed write (disk full) is one warning on stderr, then the file is left alone."""

    def __init__(self, path: Path) -> None:
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "log file", single_link=True)
        super().__init__(os.fdopen(fd, "a", encoding="utf-8"))
        self.path = path
        self.broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.broken:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if self.broken or not isinstance(error, OSError):
            return super().handleError(record)
        self.broken = True
        print(
            f"warning: cannot write log file {self.path} ({error.strerror or error}); "
            "it gets no more lines from this process",
            file=sys.stderr,
        )

    def close(self) -> None:
        try:
            self.stream.close()
        except OSError:
            pass  # a full disk: the warning was given when the write failed
        super().close()


@contextlib.contextmanager
def file_log(path: Path | ObjectPath, level: int = logging.DEBUG) -> Iterator[Path | ObjectPath]:
    """Also write every ``harness`` log record to ``path`` (appended) while the block runs.

    On an object store (an ``ObjectPath`` or a URI) objects cannot be appended to: the lines go to
    a node-local temp file, uploaded every ``UPLOAD_EVERY_S`` and whole when the block exits (also
    on an exception) as a NEW object ``<stem>.<UTC time>.<host>.<pid>.log`` next to ``path``, so
    no process overwrites another's log; the block gets that object's path. A SIGKILLed process
    loses the lines written since its last upload (the POSIX log keeps every line written)."""
    target = location(path)
    if isinstance(target, ObjectPath):
        with ObjectLog(target) as upload:
            with _logging_to(upload.local, level):
                yield upload.target
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with _logging_to(target, level):
        yield target


@contextlib.contextmanager
def _logging_to(path: Path, level: int) -> Iterator[LogFileHandler]:
    """A ``LogFileHandler`` on ``path`` attached to the ``harness`` logger for the block."""
    handler = LogFileHandler(path)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(level)
    log = logging.getLogger(ROOT)
    if log.getEffectiveLevel() > logging.INFO:  # a worker process: nothing configured yet
        log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        handler.close()


class ObjectLog:
    """A log on an object store: lines go to a node-local temp file (``local``), uploaded whole to
    ``target`` (a new object next to the requested one, claimed empty on entry by a conditional
    create, so no other process's log is ever overwritten) every ``every_s`` seconds and on exit.
    The temp file is removed once uploaded; kept (and named on stderr) when the upload fails."""

    def __init__(self, requested: ObjectPath, every_s: float | None = None) -> None:
        self.requested = requested
        self.every_s = UPLOAD_EVERY_S if every_s is None else every_s
        fd, name = tempfile.mkstemp(prefix=f"ckd-{requested.stem}-", suffix=".log")
        os.close(fd)
        self.local = Path(name)
        self.target = requested
        self._sent = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ObjectLog:
        try:
            self.target = self._claim()
        except BaseException:
            self.local.unlink(missing_ok=True)
            raise
        if self.every_s > 0:
            self._thread = threading.Thread(target=self._every, name="ckd-log-upload", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.upload()
        except Exception as e:  # a failed upload must not hide the block's own error
            print(f"warning: cannot upload log {self.target} ({e}); its lines are in {self.local}", file=sys.stderr)
            return
        self.local.unlink(missing_ok=True)

    def _claim(self) -> ObjectPath:
        """The first free ``<stem>.<UTC time>.<host>.<pid>[.<n>].log`` next to ``requested``."""
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        host = re.sub(r"[^A-Za-z0-9_-]+", "_", socket.gethostname().split(".")[0]) or "host"
        base = f"{self.requested.stem}.{stamp}.{host}.{os.getpid()}"
        for n in range(1000):
            candidate = self.requested.with_name(f"{base}{f'.{n}' if n else ''}.log")
            if atomic_create(candidate, b""):
                return candidate
        raise FileExistsError(f"1000 logs named {base}.*.log exist under {self.requested.parent}; remove some")

    def upload(self) -> None:
        """Upload the temp file whole (one PUT) when it grew since the last upload."""
        data = self.local.read_bytes()
        if len(data) != self._sent:
            atomic_write_bytes(self.target, data)
            self._sent = len(data)

    def _every(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.upload()
            except Exception as e:  # retried at the next tick and on exit
                print(f"warning: cannot upload log {self.target} yet ({e})", file=sys.stderr)
