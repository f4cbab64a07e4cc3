"""W&B for the Tune sweep: one live W&B run per student, fed from the driver.

Ray's ``WandbLoggerCallback`` starts a logging actor per trial, which doubled the sweep's wall
time offline and left tracebacks at teardown. ``StudentRuns`` is a Tune callback on the driver:
each trial reports every member's metrics under ``runs`` (``harness.cluster.sweep.TrialReporter``),
and each member gets its own W&B run (``harness.tracking_live.PackRuns``), named
``<choice>/<student>/s<seed>``, opened at its first epoch and logged epoch by epoch while it
trains; finished (tagged ``failed`` where it failed) when its trial ends. A callback error is
logged and never raised: tracking cannot stop the sweep.
"""

from __future__ import annotations

import logging

from ray import tune

from harness.config import ExperimentConfig
from harness.experiment import open_store
from harness.sweep import trial_runs
from harness.tracking_live import PackRuns

logger = logging.getLogger(__name__)


class StudentRuns(tune.Callback):
    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.runs: PackRuns | None = None

    def __getstate__(self) -> dict:  # Tune pickles callbacks for Tuner.restore; open runs stay here
        return {**self.__dict__, "runs": None}

    @property
    def live(self) -> PackRuns:
        if self.runs is None:
            self.runs = PackRuns(self.cfg)
        return self.runs

    def _guarded(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # the driver's error handlers must never crash the sweep
            logger.warning(f"[tracking] W&B {what} not logged ({type(e).__name__}: {e}); the sweep goes on")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._guarded("epoch", self._result, trial, result)

    def _result(self, trial, result: dict) -> None:
        members = result.get("runs") or {}
        grid = trial_runs(trial.config)
        if not result.get("from_results"):
            self.live.epoch(trial.trial_id, members, grid)
            return
        store = open_store(self.cfg)
        for i, m in members.items():  # trained before this sweep saw them: their curve from the row
            row = store.results.find(str(m.get("run_id"))) if m.get("run_id") else None
            if row is not None:
                self.live.row(trial.trial_id, i, row)

    def _close(self, trial, errored: bool) -> None:
        final = (trial.last_result or {}).get("runs") or {}
        grid = trial_runs(trial.config)
        failed = [str(i) for i in range(len(grid)) if errored or (final.get(str(i)) or {}).get("failed")]
        self.live.close(trial.trial_id, failed, grid)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._guarded("trial end", self._close, trial, False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._guarded("trial end", self._close, trial, True)
