"""W&B for the Tune sweep (the Ray side of ``harness.tracking.log_student_run``).

Ray's ``WandbLoggerCallback`` starts a logging actor per trial, which doubled the sweep's wall
time offline and left tracebacks at teardown. ``StudentRuns`` keeps each trial's reported
metrics on the driver (a few numbers per epoch) and writes the trial as one W&B run when it
completes or fails: about 60 ms per trial offline, no extra actors. A trial that trained a pack
writes one W&B run per member, with that member's curves from its result row.
"""

from __future__ import annotations

from ray import tune

from harness import tracking
from harness.config import ExperimentConfig
from harness.runs import Run, RunResolver
from harness.sweep import trial_runs


class StudentRuns(tune.Callback):
    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.history: dict[str, list[dict]] = {}
        self.resolver: RunResolver | None = None

    def __getstate__(self) -> dict:  # Tune pickles callbacks for Tuner.restore; histories stay here
        return {**self.__dict__, "history": {}, "resolver": None}

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        keep = {
            k: v
            for k, v in result.items()
            if isinstance(v, (int, float))
            and not isinstance(v, bool)
            and k in ("epoch", "val_acc", "test_acc", "train_loss", "train_acc", "val_loss", "test_loss", "seconds")
        }
        self.history.setdefault(trial.trial_id, []).append(keep)

    def _write(self, trial, failed: bool) -> None:
        history = self.history.pop(trial.trial_id, [])
        runs = trial_runs(trial.config)
        if len(runs) == 1:
            tracking.log_student_run(self.cfg, str(trial), runs[0], history, failed=failed)
            return
        for i, run in enumerate(runs):  # a pack: one W&B run per member, its curves from its result row
            row = self._row(run)
            curve = [] if row is None else tracking.student_curve(row)
            tracking.log_student_run(self.cfg, f"{trial}-m{i}", run, curve, failed=failed or row is None)

    def _row(self, run: dict) -> dict | None:
        if self.resolver is None:
            self.resolver = RunResolver(self.cfg)
        return self.resolver.store.results.find(self.resolver.resolve(Run.from_dict(self.cfg, run)).run_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._write(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._write(trial, failed=True)
