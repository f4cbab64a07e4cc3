"""Progress for long work, with one library (tqdm): a live bar on a terminal, log lines elsewhere.

On a terminal (stderr is a TTY) ``Progress`` draws a tqdm bar with a rate and an ETA. Anywhere
else (CI, Ray workers, a log file) it writes a plain log line through ``logging`` at most every
``interval_s`` seconds, formatted by tqdm the same way, e.g.::

    [cnn1d_small-mnist1d-s0] epoch 3 120/391 batch [00:20<00:45, 6.01batch/s]

so that output stays line-based, periodic and grep-able. ``CKD_PROGRESS=bar|lines|off``
overrides the choice; ``configure()`` (the CLI) sets it and the line interval.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
LINE_FORMAT = "{desc} {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}]{postfix}"
MODES = ("auto", "bar", "lines", "off")
_settings = {"mode": "auto", "interval_s": 10.0}
logger = logging.getLogger(__name__)


def configure(mode: str | None = None, interval_s: float | None = None) -> None:
    """Set the display mode (auto | bar | lines | off) and the seconds between progress lines."""
    if mode is not None:
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}: use one of {', '.join(MODES)}")
        _settings["mode"] = mode
    if interval_s is not None:
        _settings["interval_s"] = float(interval_s)


def mode() -> str:
    """``bar`` on a terminal, else ``lines`` (``CKD_PROGRESS`` or ``configure`` may force one)."""
    chosen = os.environ.get("CKD_PROGRESS") or _settings["mode"]
    if chosen == "auto":
        return "bar" if _is_terminal(sys.stderr) else "lines"
    return chosen


def _is_terminal(stream) -> bool:
    """Is ``stream`` a TTY? Wrapped streams (Ray Tune's ``Tee``, pytest's capture) may lack isatty."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def bars_active() -> bool:
    """Is a tqdm bar on screen now (log lines must then go through ``tqdm.write``)?"""
    return bool(getattr(tqdm, "_instances", None))


class Progress:
    """Counts work done out of ``total``; shows it as a bar or as periodic log lines.

    ``log`` is the logger the lines go to (the caller's module logger, so that a per-trajectory
    file handler catches them); ``final_line`` logs one last line on close even if the work was
    quick (for stage-level progress; per-epoch progress stays quiet when it is fast).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        log: logging.Logger | None = None,
        interval_s: float | None = None,
        leave: bool = True,
        position: int | None = None,
        final_line: bool = False,
        initial: int = 0,
    ) -> None:
        self.total, self.desc, self.unit, self.n, self.initial = total, desc, unit, initial, initial
        self.log = log or logger
        self.interval_s = _settings["interval_s"] if interval_s is None else float(interval_s)
        self.final_line, self.postfix = final_line, ""
        self.mode = mode()
        self.began = self._last_line = time.perf_counter()
        self.lines_written = 0
        self.bar = None
        if self.mode == "bar":
            self.bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                leave=leave,
                position=position,
                initial=initial,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines" and time.perf_counter() - self._last_line >= self.interval_s:
            self._write_line()

    def set_n(self, n: int) -> None:
        """Move the count to ``n`` (work reported elsewhere, e.g. by a Ray actor)."""
        self.update(n - self.n)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def set_postfix(self, text: str) -> None:
        """Short status after the counts, e.g. ``val 97.2% lr 0.1``."""
        self.postfix = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def line(self) -> str:
        """The current state as one line (what lines mode logs)."""
        return tqdm.format_meter(
            self.n,
            self.total,
            time.perf_counter() - self.began,
            prefix=self.desc,
            unit=self.unit,
            bar_format=LINE_FORMAT,
            initial=self.initial,
            postfix=self.postfix or None,
        )

    def _write_line(self) -> None:
        self._last_line = time.perf_counter()
        self.lines_written += 1
        self.log.info(self.line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "lines" and (self.final_line or self.lines_written):
            self._write_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None, **kw) -> Iterator[T]:
    """Iterate ``items`` while showing progress (``total`` defaults to ``len(items)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit, **kw) as progress:
        for item in items:
            yield item
            progress.update()
