"""The Ray side of ``harness/pipeline.py``: the stages on a Ray cluster.

Each stage joins (or starts) the cluster only when it has work: a re-run whose work is all done
never starts Ray. ``run_stages`` (``ckd run``) overlaps scoring with training: each trajectory
goes to the scorer actor the moment it finishes; the sweep then runs as a Tune experiment.
"""

from __future__ import annotations

import threading
import time

from harness.cluster.connection import ClusterSession
from harness.cluster.scoring import Scorer, run_scoring
from harness.cluster.sweep import run_sweep
from harness.cluster.teachers import TrajectoryRunner
from harness.config import ExperimentConfig


def train_teachers(session: ClusterSession, scorer: Scorer | None = None, status=None) -> dict[str, dict]:
    """Every trajectory in actors; each finished one is handed to ``scorer`` (W&B: the stage's
    tracking hook in ``harness.pipeline``). ``status`` (a ``TeachersStatus``): told to hold new
    students while a trajectory or the scorer waits for a slot."""

    def on_finished(name: str, manifest: dict) -> None:
        if scorer is not None:
            scorer.submit(name)

    runner = TrajectoryRunner(session, on_finished=on_finished, on_tick=scorer.poll if scorer is not None else None)
    if scorer is not None:
        scorer.ready = runner.all_started  # an idle scorer never holds a slot a trajectory waits for
    if status is not None:

        def hold() -> bool:
            launched = bool(runner.refs or runner.manifests or runner.failures)
            return not launched or not runner.all_started() or (scorer is not None and scorer.waiting_for_slot())

        status.hold = hold
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
    """Teachers (scored as they finish) and the sweep, in one cluster session; stage seconds.
    With ``sweep.overlap`` (grid search) students start while other teachers still train."""
    if cfg.sweep.overlap and cfg.sweep.search == "grid" and _teachers_to_train(cfg):
        return _run_overlapped(cfg)
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


def _teachers_to_train(cfg: ExperimentConfig) -> bool:
    """Is any trajectory unfinished? (Otherwise there is nothing to overlap, and the strict path
    skips finished work without starting Ray.)"""
    from harness.experiment import open_store, trajectory_specs

    store = open_store(cfg)
    return any(not store.trajectory(s.name).is_finished() for s in trajectory_specs(cfg))


def _run_overlapped(cfg: ExperimentConfig) -> dict[str, float]:
    """Teachers + scoring in a driver thread, the Tune sweep in this one, started at once."""
    from harness.cluster.ready_runs import TeachersStatus
    from harness.cluster.sweep import run_sweep_overlapped

    times: dict[str, float] = {}
    status, errors = TeachersStatus(), []
    t0 = time.perf_counter()
    with ClusterSession(cfg) as session:
        _ = session.info  # connect (and check storage) once, in this thread
        scorer = Scorer(session)
        scorer.release_idle = True  # an idle scorer frees its CPU for students (a new actor per burst)

        def teachers_then_scores() -> None:
            try:
                train_teachers(session, scorer=scorer, status=status)
                times["teachers"] = time.perf_counter() - t0
                scorer.wait()
                times["score (after teachers)"] = time.perf_counter() - t0 - times["teachers"]
            except BaseException as e:  # re-raised on the driver's main thread below
                errors.append(e)
                status.failed.add("teachers")
            finally:
                scorer.close()
                status.done.set()

        thread = threading.Thread(target=teachers_then_scores, name="ckd-teachers", daemon=True)
        thread.start()
        try:
            run_sweep_overlapped(session, status)
        finally:
            thread.join()
        times["sweep (overlapped)"] = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return times
