"""A compact sweep progress printer (a Tune ``Callback``); imports Ray, so only the Ray path loads it.

Tune's own reporter prints a large result box per trial; this one prints one line per finished,
retried or failed trial and a status line every ``interval_s``.
"""
from __future__ import annotations

import time

from ray import tune


def _pct(x) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) else "-"


class SweepProgress(tune.Callback):
    def __init__(self, interval_s: float = 30.0, log=None, epochs: int | None = None) -> None:
        self.interval_s = interval_s
        self.epochs = epochs
        self.log = log
        self._last = 0.0
        self._began = time.time()

    def __getstate__(self) -> dict:  # Tune pickles callbacks for Tuner.restore; the log stays here
        return {**self.__dict__, "log": None}

    def _say(self, msg: str) -> None:
        (self.log or (lambda m: print(m, flush=True)))(msg)

    @staticmethod
    def _label(trial) -> str:
        run = trial.config.get("run", {})
        hp = "" if run.get("teacher_choice") == "none" else f" T={run.get('temperature')} w={run.get('kd_weight')}"
        return f"{run.get('student_arch')}<-{run.get('teacher_choice')}{hp} s{run.get('seed')}"

    @staticmethod
    def _counts(trials) -> str:
        states: dict[str, int] = {}
        for t in trials:
            states[t.status] = states.get(t.status, 0) + 1
        return ", ".join(f"{v} {k.lower()}" for k, v in sorted(states.items()))

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.time() - self._last >= self.interval_s:
            self._last = time.time()
            self._say(f"[sweep] {time.time() - self._began:.0f}s: {len(trials)} trials: {self._counts(trials)}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        r = trial.last_result or {}
        done = sum(t.status == "TERMINATED" for t in trials) + (trial.status != "TERMINATED")
        stopped = self.epochs is not None and isinstance(r.get("epoch"), int) and r["epoch"] < self.epochs
        self._say(f"[sweep] {done}/{len(trials)} {'stopped early' if stopped else 'done'}: {self._label(trial)}: val {_pct(r.get('val_acc'))} "
                  f"test {_pct(r.get('test_acc'))} after {r.get('epoch', '-')} epochs")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._say(f"[sweep] {self._label(trial)} failed; retrying from its last checkpoint "
                  f"(attempt {trial.num_failures + 1})")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._say(f"[sweep] {self._label(trial)} FAILED after {trial.num_failures} failures; logs in {trial.path}")
