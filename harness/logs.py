"""Logging set-up: every module logs to ``logging.getLogger(__name__)``; this configures them once.

The CLI calls ``setup_logging(verbosity)`` (``-v`` debug, ``-q`` warnings only) and adds a
per-stage log file with ``file_log``; Ray workers (trajectory actors, the scorer, Tune trials)
use ``file_log`` to send a trajectory's or a trial's lines to its own file. Console lines go to
stderr and through ``tqdm.write`` while a progress bar is drawn, so bars and lines never tear.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from harness.progress import bars_active

ROOT = "harness"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TAG = "_ckd_console"


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
    log = setup_logging(verbosity, stream)
    try:
        yield log
    finally:
        for h in [h for h in log.handlers if getattr(h, _TAG, False)]:
            log.removeHandler(h)


def setup_logging(verbosity: int = 0, stream=None) -> logging.Logger:
    """Configure the ``harness`` logger: console handler at INFO (+1: DEBUG, -1: WARNING).

    Idempotent: a second call replaces the console handler (in-process CLI calls, tests).
    """
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


@contextlib.contextmanager
def file_log(path: Path, level: int = logging.DEBUG) -> Iterator[Path]:
    """Also write every ``harness`` log record to ``path`` (appended) while the block runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
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
