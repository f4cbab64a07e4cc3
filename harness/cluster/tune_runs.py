"""One row per run from Ray Tune's own results, although a trial trains a pack of runs.

A sweep trial is a pack (``sweep.pack_size``): Tune's ``ResultGrid`` / ``ExperimentAnalysis``
have one row per trial, with the pack's means in ``val_acc``/``test_acc`` and every member's own
metrics and identity in ``runs/<i>/...`` (``harness.cluster.sweep.TrialReporter``). ``runs_frame``
expands them: one row per run, with that run's grid point (its own config), run id, resolved
teachers and last reported metrics, plus the trial it ran in. With ``sweep.pack_size=1`` (or a
scheduler or searcher, which force it) Tune's rows are runs already.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.failures import run_label
from harness.sweep import trial_runs

RUN_COLUMNS = ("teacher_arch", "teacher_seed", "student_arch", "teacher_choice", "temperature", "kd_weight", "seed")


def _trials(results: Any) -> list[tuple[str, dict, dict]]:
    """(trial id, config, last metrics) of each trial of a ResultGrid or an ExperimentAnalysis."""
    if hasattr(results, "trials"):  # ExperimentAnalysis
        return [(t.trial_id, dict(t.config), dict(t.last_result or {})) for t in results.trials]
    out = []
    for r in results:  # ResultGrid: Result objects
        metrics = dict(r.metrics or {})
        out.append((str(metrics.get("trial_id", "")), dict(r.config or {}), metrics))
    return out


def _member(metrics: dict, index: int) -> dict:
    """Member ``index``'s metrics, nested (``runs: {"0": {...}}``) or flattened (``runs/0/x``)."""
    nested = (metrics.get("runs") or {}).get(str(index))
    if isinstance(nested, dict):
        return dict(nested)
    prefix = f"runs/{index}/"
    return {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}


def runs_frame(results: Any) -> pd.DataFrame:
    """One row per run of a Tune sweep (``ResultGrid`` or ``ExperimentAnalysis``): the run's own
    grid point, ``run_id``, ``label``, ``teachers``, its last ``val_acc`` / ``test_acc`` /
    ``epoch``, ``failed``, and the ``trial_id`` and ``pack_size`` of the trial it trained in."""
    rows = []
    for trial_id, config, metrics in _trials(results):
        grid = trial_runs(config)
        for i, point in enumerate(grid):
            m = _member(metrics, i)
            rows.append(
                {
                    **{k: point.get(k) for k in RUN_COLUMNS},
                    "run_id": m.get("run_id"),
                    "label": m.get("label") or run_label(point),
                    "teachers": m.get("teachers"),
                    "epoch": m.get("epoch"),
                    "val_acc": m.get("val_acc"),
                    "test_acc": m.get("test_acc"),
                    "failed": bool(m.get("failed", 0)),
                    "trial_id": trial_id,
                    "pack_size": len(grid),
                }
            )
    return pd.DataFrame(rows)
