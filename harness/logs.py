"""Logging set-up: every module logs to ``logging.getLogger(__name__)``; this configures them once.

The CLI calls ``setup_logging(verbosity)`` (``-v`` debug, ``-q`` warnings only) and adds a
per-stage log file with ``file_log``; Ray workers (trajectory actors, the scorer, Tune trials)
use ``file_log`` to send a trajectory's or a trial's lines to its own file. Console lines go to
stderr and through ``tqdm.write`` while a progress bar is drawn, so bars and lines never tear.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from harness.fileio import open_regular
from harness.progress import bars_active

ROOT = "harness"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TAG = "_ckd_console"
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
def file_log(path: Path, level: int = logging.DEBUG) -> Iterator[Path]:
    """Also write every ``harness`` log record to ``path`` (appended) while the block runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = LogFileHandler(path)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(level)
    log = logging.getLogger(ROOT)
    if log.getEffectiveLevel() > logging.INFO:  # a worker process: nothing configured yet
        log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield path
    finally:
        log.removeHandler(handler)
        handler.close()
