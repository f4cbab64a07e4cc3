"""Progress for long work, with one library (tqdm): a live bar on a terminal, log lines elsewhere.

On a terminal (stderr is a TTY) ``Progress`` draws a tqdm bar with a rate and an ETA. Anywhere
else (CI, Ray workers, a log file) it writes a plain log line through ``logging`` at most every
``interval_s`` seconds, formatted by tqdm the same way, e.g.::

    [cnn1d_small-mnist1d-s0] epoch 3 120/391 batch [00:20<00:45, 6.01batch/s]

so that output stays line-based, periodic and grep-able. ``CKD_PROGRESS=bar|lines|off``
overrides the choice; ``configure()`` (the CLI) sets it and the line interval.

Stages of a run (teachers, scoring, students) each write one ``StageLine`` per interval off a
terminal and ``publish`` their ETA here; a stage line then appends the run's overall ETA, the
critical path through the stages (``overall``). ETAs are honest about what is known: none before
a unit of work finished, frozen (no longer ticking) when the work is done, and a stage of several
jobs on fewer slots runs its queued jobs after the running ones (``slot_eta``).
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
Clock = Callable[[], float]
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


def duration(seconds: float | None) -> str:
    """``0:40``, ``12:05``, ``1:02:03``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def slot_eta(running: list[float], queued: list[float], slots: int) -> float:
    """Seconds until ``running`` jobs (seconds left each) and ``queued`` jobs (seconds each) are
    done on ``slots`` slots: each queued job starts on the first slot that frees (list scheduling),
    so 3 equal jobs on 2 slots take two waves, not 1.5."""
    slots = max(1, slots, len(running))
    free = sorted(running) + [0.0] * (slots - len(running))
    heapq.heapify(free)
    for job in queued:
        heapq.heappush(free, heapq.heappop(free) + job)
    return max(free) if free else 0.0


class _Bar(tqdm):
    """A tqdm bar that stops its clock once ``frozen`` is set (a finished bar no longer ticks when
    other bars or log lines redraw it)."""

    frozen: float | None = None

    @property
    def format_dict(self):
        d = super().format_dict
        if self.frozen is not None:
            d["elapsed"] = self.frozen
        return d


class Progress:
    """Counts work done out of ``total``; shows it as a bar or as periodic log lines.

    ``log`` is the logger the lines go to (the caller's module logger, so that a per-trajectory
    file handler catches them); ``final_line`` logs one last line on close even if the work was
    quick (for stage-level progress; per-epoch progress stays quiet when it is fast). ``clock``
    (seconds, default ``time.perf_counter``) is injectable for tests. ``start()`` restarts the
    clock when queued work begins, so that time in the queue does not count as work.
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
        clock: Clock | None = None,
    ) -> None:
        self.total, self.desc, self.unit, self.n, self.initial = total, desc, unit, initial, initial
        self.log = log or logger
        self.interval_s = _settings["interval_s"] if interval_s is None else float(interval_s)
        self.final_line, self.postfix = final_line, ""
        self.clock = clock or time.perf_counter
        self.mode = mode()
        self.began = self._last_line = self.last_step = self.clock()
        self.done_after: float | None = None  # seconds from start to done: the frozen elapsed time
        self.lines_written = 0
        self.bar: _Bar | None = None
        if self.mode == "bar":
            self.bar = _Bar(
                total=total,
                desc=desc,
                unit=unit,
                leave=leave,
                position=position,
                initial=initial,
                dynamic_ncols=True,
                smoothing=0,  # the average rate since start: epochs and students are few and uneven
                file=sys.stderr,
            )

    def start(self) -> None:
        """The work begins now (it was queued): rates and ETAs count from here."""
        self.began = self.last_step = self.clock()
        self.initial = self.n
        if self.bar is not None:
            self.bar.start_t = self.bar.last_print_t = self.bar._time()
            self.bar.initial = self.n

    @property
    def done(self) -> bool:
        return self.total is not None and self.n >= self.total

    def update(self, n: int = 1) -> None:
        if self.done_after is not None and n == 0:
            return  # finished: nothing moves any more
        self.n += n
        now = self.clock()
        if n:
            self.last_step = now
        if self.done and self.done_after is None:
            self.done_after = now - self.began
        if self.bar is not None:
            self.bar.update(n)
            if self.done_after is not None:
                self.bar.frozen = self.bar.format_dict["elapsed"]
        elif self.mode == "lines" and now - self._last_line >= self.interval_s:
            self._write_line()

    def set_n(self, n: int) -> None:
        """Move the count to ``n`` (work reported elsewhere, e.g. by a Ray actor)."""
        self.update(n - self.n)

    def set_total(self, total: int | None) -> None:
        if total == self.total:
            return
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def set_postfix(self, text: str) -> None:
        """Short status after the counts, e.g. ``val 97.2% lr 0.1``."""
        self.postfix = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def per_unit(self) -> float | None:
        """Measured seconds per unit since ``start`` (None before a unit finished)."""
        done = self.n - self.initial
        return (self.last_step - self.began) / done if done > 0 else None

    def eta(self) -> float | None:
        """Seconds left: none while nothing ran, 0 when done; the unit in flight counts as begun."""
        if self.done:
            return 0.0
        per = self.per_unit()
        if per is None or self.total is None:
            return None
        left = self.total - self.n
        return max((left - 1) * per, left * per - (self.clock() - self.last_step))

    def line(self) -> str:
        """The current state as one line (what lines mode logs)."""
        elapsed = self.done_after if self.done_after is not None else self.clock() - self.began
        per = self.per_unit()
        return tqdm.format_meter(
            self.n,
            self.total,
            elapsed,
            prefix=self.desc,
            unit=self.unit,
            bar_format=LINE_FORMAT,
            initial=self.initial,
            rate=1 / per if per else None,
            postfix=self.postfix or None,
        )

    def _write_line(self) -> None:
        self._last_line = self.clock()
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


# --------------------------------------------------------------------------- stages of a run

STAGE_ORDER = ("teachers", "scoring", "students")


@dataclass
class StageEta:
    """A stage's published estimate: ``eta_s`` until its known work is done at measured rates;
    ``tail_s`` the least it needs after the stage before it ends (one score, one student pack);
    None: not measured yet."""

    eta_s: float | None
    tail_s: float | None = 0.0
    done: bool = False


_stages: dict[str, StageEta] = {}


def publish(stage: str, eta_s: float | None, tail_s: float | None = 0.0, done: bool = False) -> None:
    """Record ``stage``'s current ETA for the run's overall figure."""
    _stages[stage] = StageEta(0.0 if done else eta_s, 0.0 if done else tail_s, done)


def reset_stages() -> None:
    """Forget every stage (a new verb starts)."""
    _stages.clear()


def overall() -> tuple[float, bool, dict[str, float | None]]:
    """The run's ETA along its critical path: a stage ends at its own ETA, but no earlier than
    one ``tail`` after the stage before it. Returns the end, whether it is exact (False: a stage
    is not measured yet and counts as 0, so the end is a lower bound) and each stage's end."""
    names = sorted(_stages, key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER))
    end, exact = 0.0, True
    ends: dict[str, float | None] = {}
    for name in names:
        st = _stages[name]
        exact = exact and st.eta_s is not None and st.tail_s is not None
        end = max(st.eta_s or 0.0, end + (st.tail_s or 0.0))
        if not st.done:
            ends[name] = end if st.eta_s is not None else None
    return end, exact, ends


def overall_text() -> str:
    """``run ETA 2:30 (teachers 0:40, scoring 1:10, students ?)``, or "" unless 2+ stages run;
    ``run ETA ≥ 1:10`` while a stage has no estimate yet."""
    if len(_stages) < 2 or all(s.done for s in _stages.values()):
        return ""
    end, exact, ends = overall()
    parts = ", ".join(f"{name} {duration(t)}" for name, t in ends.items())
    figure = duration(end) if exact else f"≥ {duration(end)}" if end > 0 else "?"
    return f"run ETA {figure} ({parts})"


class StageLine:
    """One progress line for a stage off a terminal: at most every ``interval_s``, never the same
    state twice in a row (a heartbeat after ``6 * interval_s`` of no change), the stage's ETA and
    the run's overall ETA appended. ``bar_mode``: also log on a terminal (stages without a bar)."""

    def __init__(
        self, log: logging.Logger, interval_s: float, clock: Clock | None = None, bar_mode: bool = False
    ) -> None:
        self.log, self.interval_s, self.clock = log, float(interval_s), clock or time.monotonic
        self.enabled = mode() == "lines" or (bar_mode and mode() == "bar")
        self.last_state, self.last_t = "", -math.inf

    def offer(self, state: str, eta_s: float | None, final: bool = False) -> bool:
        """Log ``state`` with its ETA if it is due (or ``final``) and not a repeat; True if logged."""
        now = self.clock()
        if not self.enabled or (not final and now - self.last_t < self.interval_s):
            return False
        if state == self.last_state and (final or now - self.last_t < 6 * self.interval_s):
            return False
        self.last_state, self.last_t = state, now
        text = state if final or not eta_s else f"{state}; ETA {duration(eta_s)}"  # 0: done, None: unknown
        run = "" if final else overall_text()
        self.log.info(f"{text} | {run}" if run else text)
        return True
