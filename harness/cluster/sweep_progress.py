"""Sweep progress on the driver (a Tune ``Callback``); imports Ray, so only the Ray path loads it.

Tune's own reporter prints a large result box per trial; this one keeps one ``Progress`` over
the students (a bar on a terminal) and, off a terminal, one ``[sweep]`` line per ``interval_s``:
``[sweep] 5/18 students done, 9 running, 4 waiting for the scorer (s0); ETA 0:50``. What the
students wait for comes from ``waiting()`` (the pipeline knows: teachers, the scorer); the ETA
runs the waiting packs after the running ones at the measured time per pack. One line per
retried or failed trial is logged as well, and per finished trial in sweeps of up to
``TRIAL_LINES`` trials (larger ones: with ``-v``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from ray import tune

from harness.progress import Progress, StageLine, publish, slot_eta
from harness.sweep import describe_pack, trial_runs

logger = logging.getLogger(__name__)
TRIAL_LINES = 200  # sweeps of more trials log a finished trial only with -v (debug), or when it failed


def _pct(x) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) else "-"


def _members(trial) -> int:
    return int((trial.last_result or {}).get("members") or len(trial_runs(trial.config)))


def busy_size(running: list) -> float:
    """Mean students per running pack (1 when none runs)."""
    return sum(_members(t) for t in running) / len(running) if running else 1.0


class SweepProgress(tune.Callback):
    """``waiting()``: what students not yet running wait for (e.g. ``"the scorer (s0, s2)"``),
    or None (then they are "queued"); ``clock``: seconds, injectable for tests."""

    def __init__(
        self,
        interval_s: float = 30.0,
        epochs: int | None = None,
        trials: int | None = None,
        waiting: Callable[[], str | None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.interval_s, self.epochs, self.trials = interval_s, epochs, trials
        self.waiting, self.clock = waiting, clock or time.monotonic
        self._progress: Progress | None = None
        self._stage: StageLine | None = None
        self._last_step = -math.inf
        self.started: dict[str, float] = {}  # trial id -> when it started (this attempt)
        self.first_epoch: dict[str, tuple[float, int]] = {}  # trial id -> (when, which) its first report came
        self.durations: list[float] = []  # seconds per finished pack
        self.slots = 0  # most packs seen running at once
        self.pack_s: float | None = None  # estimated seconds per pack
        publish("students", None, tail_s=None)

    def __getstate__(self) -> dict:  # Tune pickles callbacks for Tuner.restore; the display stays here
        return {**self.__dict__, "_progress": None, "_stage": None, "waiting": None, "clock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.clock = time.monotonic

    @property
    def progress(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                self.trials, "[sweep]", "student", log=logger, interval_s=float("inf"), clock=self.clock
            )
            self._stage = StageLine(logger, self.interval_s, self.clock)
        return self._progress

    @staticmethod
    def _label(trial) -> str:
        return describe_pack(trial_runs(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        epoch = result.get("epoch")
        if isinstance(epoch, int) and trial.trial_id not in self.first_epoch:
            self.first_epoch[trial.trial_id] = (self.clock(), epoch)

    def _left(self, trial, now: float) -> tuple[float, float] | None:
        """(this pack's whole time, its time left) at its pace per epoch, or None before an epoch.
        The pace is measured after the first report when there is a later one: the time before
        the first epoch (data, teacher logits) is set-up, not a rate."""
        epoch = (trial.last_result or {}).get("epoch")
        if not (self.epochs and isinstance(epoch, int) and 0 < epoch <= self.epochs):
            return None
        ran = now - self.started.get(trial.trial_id, now)
        first_t, first_e = self.first_epoch.get(trial.trial_id, (None, epoch))
        if first_t is not None and epoch > first_e:
            per_epoch = (now - first_t) / (epoch - first_e)
            return ran + per_epoch * (self.epochs - epoch), per_epoch * (self.epochs - epoch)
        return ran * self.epochs / epoch, ran * (self.epochs - epoch) / epoch

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if not self.started:
            self.progress.start()  # students' rate counts from the first one, not from the wait
        self.started[trial.trial_id] = self.clock()

    def on_step_end(self, iteration, trials, **info) -> None:
        # Tune calls this every loop step: counting the trials each time would cost O(trials) per
        # step, O(trials^2) per sweep; refresh the status once a second at most.
        now = self.clock()
        if now - self._last_step < 1.0:
            return
        self._last_step = now
        self.show(trials)

    def show(self, trials, final: bool = False) -> None:
        """Update the bar / publish the ETA / log the ``[sweep]`` line when due."""
        p = self.progress
        p.set_total(max(self.trials or 0, p.n))
        running = [t for t in trials if t.status == "RUNNING"]
        self.slots = max(self.slots, len(running))
        busy = sum(_members(t) for t in running)
        failed = sum(_members(t) for t in trials if t.status == "ERROR")
        rest = max(0, (p.total or 0) - p.n - busy - failed)
        what = self.waiting() if self.waiting is not None and rest else None
        text = f"{busy} running" + (f", {rest} waiting for {what}" if what else f", {rest} queued" if rest else "")
        text += f", {failed} FAILED" if failed else ""
        p.set_postfix(text)
        p.update(0)
        eta = self.eta(running, rest)
        publish("students", eta, tail_s=self.pack_s if rest else 0.0, done=final)
        self._stage.offer(f"[sweep] {p.n}/{p.total} students done, {text}", eta, final=final)

    def eta(self, running: list, rest: int) -> float | None:
        """Seconds until every student is done: each running pack from its epochs so far (or the
        mean pack time), the rest in packs of the mean size after a slot frees; None before any
        pack finished an epoch."""
        if not running and not rest:
            return 0.0
        now, seen = self.clock(), list(self.durations)
        left: list[float | None] = []
        for t in running:
            pace = self._left(t, now)
            if pace is not None:
                seen.append(pace[0])  # this pack's whole time at its pace so far
            left.append(None if pace is None else pace[1])  # None: no epoch yet, the mean pack time below
        if not seen:
            return None
        mean = self.pack_s = sum(seen) / len(seen)
        ran = {id(t): now - self.started.get(t.trial_id, now) for t in running}
        todo = [x if x is not None else max(0.0, mean - ran[id(t)]) for x, t in zip(left, running)]
        size = self.progress.n / len(self.durations) if self.durations else busy_size(running)
        return slot_eta(todo, [mean] * math.ceil(rest / max(1.0, size)), slots=max(self.slots, 1))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        r = trial.last_result or {}
        members = int(r.get("members", 1))  # a trial trains a pack of students
        stopped = self.epochs is not None and isinstance(r.get("epoch"), int) and r["epoch"] < self.epochs
        if trial.trial_id in self.started:
            self.durations.append(self.clock() - self.started.pop(trial.trial_id))
        self.first_epoch.pop(trial.trial_id, None)
        failed = int(r.get("failed", 0))  # members that failed alone (harness/failures.py): counted, said
        self.progress.update(members)
        # a line per finished trial while they are few; past that, the periodic line says it (-v: all)
        say = logger.info if failed or (self.trials or 0) <= TRIAL_LINES else logger.debug
        say(
            f"[sweep] {self.progress.n}/{self.progress.total} students {'stopped early' if stopped else 'done'}: "
            f"{self._label(trial)}: {'mean ' if members - failed > 1 else ''}val {_pct(r.get('val_acc'))}"
            + (f" test {_pct(r['test_acc'])}" if r.get("test_acc") is not None else "")
            + f" after {r.get('epoch', '-')} epochs"
            + (f"; {failed} of {members} FAILED (see the end of the run)" if failed else "")
        )

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.started.pop(trial.trial_id, None)
        self.first_epoch.pop(trial.trial_id, None)
        logger.info(
            f"[sweep] {self._label(trial)} failed; retrying from its last checkpoint (attempt {trial.num_failures + 1})"
        )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.started.pop(trial.trial_id, None)
        self.first_epoch.pop(trial.trial_id, None)
        logger.warning(f"[sweep] {self._label(trial)} FAILED after {trial.num_failures} failures; logs in {trial.path}")

    def on_experiment_end(self, trials, **info) -> None:
        if self._progress is not None:
            self.show(trials, final=True)
            self._progress.close()
            self._progress = None
