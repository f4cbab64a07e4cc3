"""The Ray side of ``harness/pipeline.py``: the stages on a Ray cluster.

Each stage joins (or starts) the cluster only when it has work: a re-run whose work is all done
never starts Ray. ``run_stages`` (``ckd run``) overlaps scoring with training: each trajectory
goes to the scorer actor the moment it finishes; the sweep then runs as a Tune experiment.
"""
from __future__ import annotations

import time

from harness import tracking
from harness.cluster.connection import ClusterSession
from harness.cluster.scoring import Scorer, run_scoring
from harness.cluster.sweep import run_sweep
from harness.cluster.teachers import TrajectoryRunner
from harness.config import ExperimentConfig


def train_teachers(session: ClusterSession, scorer: Scorer | None = None) -> dict[str, dict]:
    """Every trajectory in actors; each finished one is logged to W&B and handed to ``scorer``."""

    def on_finished(name: str, manifest: dict) -> None:
        if tracking.enabled(session.cfg):
            tracking.log_trajectory(session.cfg, manifest)
        if scorer is not None:
            scorer.submit(name)

    runner = TrajectoryRunner(session, on_finished=on_finished, on_tick=scorer.poll if scorer is not None else None)
    if scorer is not None:
        scorer.ready = runner.all_started  # an idle scorer never holds a slot a trajectory waits for
    return runner.run()


def teachers(cfg: ExperimentConfig) -> dict[str, dict]:
    with ClusterSession(cfg) as session:
        return train_teachers(session)


def score(cfg: ExperimentConfig) -> dict:
    with ClusterSession(cfg) as session:
        return run_scoring(session)


def sweep(cfg: ExperimentConfig) -> list[dict]:
    with ClusterSession(cfg) as session:
        return run_sweep(session)


def run_stages(cfg: ExperimentConfig) -> dict[str, float]:
    """Teachers (scored as they finish) then the sweep, in one cluster session; stage seconds."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    with ClusterSession(cfg) as session:
        scorer = Scorer(session)
        try:
            train_teachers(session, scorer=scorer)
            times["teachers"] = time.perf_counter() - t0
            scorer.wait()
        finally:
            scorer.close()
        times["score (after teachers)"] = time.perf_counter() - t0 - times["teachers"]
        t1 = time.perf_counter()
        run_sweep(session)
        times["sweep"] = time.perf_counter() - t1
    return times
