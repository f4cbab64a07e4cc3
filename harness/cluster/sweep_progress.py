"""Sweep progress on the driver (a Tune ``Callback``); imports Ray, so only the Ray path loads it.

Tune's own reporter prints a large result box per trial; this one keeps one ``Progress`` over
the trials (a bar on a terminal, a line every ``interval_s`` elsewhere, with the rate and ETA)
and logs one line per finished, retried or failed trial.
"""

from __future__ import annotations

import logging
import time

from ray import tune

from harness.progress import Progress
from harness.sweep import describe_pack, trial_runs

logger = logging.getLogger(__name__)


def _pct(x) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) else "-"


class SweepProgress(tune.Callback):
    def __init__(self, interval_s: float = 30.0, epochs: int | None = None, trials: int | None = None) -> None:
        self.interval_s, self.epochs, self.trials = interval_s, epochs, trials
        self._progress: Progress | None = None
        self._last_step = 0.0

    def __getstate__(self) -> dict:  # Tune pickles callbacks for Tuner.restore; the display stays here
        return {**self.__dict__, "_progress": None}

    @property
    def progress(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(self.trials, "[sweep]", "student", log=logger, interval_s=self.interval_s)
        return self._progress

    @staticmethod
    def _label(trial) -> str:
        return describe_pack(trial_runs(trial.config))

    @staticmethod
    def _counts(trials) -> str:
        states: dict[str, int] = {}
        for t in trials:
            states[t.status] = states.get(t.status, 0) + 1
        return ", ".join(f"{v} {k.lower()}" for k, v in sorted(states.items()))

    def on_step_end(self, iteration, trials, **info) -> None:
        # Tune calls this every loop step: counting the trials each time would cost O(trials) per
        # step, O(trials^2) per sweep; refresh the status once a second at most.
        now = time.monotonic()
        if now - self._last_step < 1.0:
            return
        self._last_step = now
        self.progress.set_total(max(self.trials or 0, self.progress.n))
        self.progress.set_postfix(self._counts(trials))
        self.progress.update(0)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        r = trial.last_result or {}
        members = int(r.get("members", 1))  # a trial trains a pack of students
        stopped = self.epochs is not None and isinstance(r.get("epoch"), int) and r["epoch"] < self.epochs
        self.progress.update(members)
        logger.info(
            f"[sweep] {self.progress.n}/{self.progress.total} students {'stopped early' if stopped else 'done'}: "
            f"{self._label(trial)}: {'mean ' if members > 1 else ''}val {_pct(r.get('val_acc'))} "
            f"test {_pct(r.get('test_acc'))} after {r.get('epoch', '-')} epochs"
        )

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        logger.info(
            f"[sweep] {self._label(trial)} failed; retrying from its last checkpoint (attempt {trial.num_failures + 1})"
        )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        logger.warning(f"[sweep] {self._label(trial)} FAILED after {trial.num_failures} failures; logs in {trial.path}")

    def on_experiment_end(self, trials, **info) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
