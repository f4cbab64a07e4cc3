"""The stages behind the CLI verbs, on Ray (``cluster.mode=ray``) or in this process (``local``).

``run_pipeline(cfg)`` = ``ckd run``: teachers -> score -> sweep -> report, every stage
idempotent. On Ray the teachers train in actors and each finished trajectory goes straight to
the scorer actor, so scoring overlaps training; the sweep then runs as a Tune experiment. In
local mode the same core functions run one after another in this process (the GPU machines have
no Ray), which is also the baseline of ``benchmarks/bench_ray_overhead.py``.
"""
from __future__ import annotations

import time
from harness.cluster.connection import Log, _print


def is_local(cfg) -> bool:
    return str(cfg.cluster.mode) == "local"


def ray_session(cfg, log: Log = _print):
    """A ``ClusterSession``: paths made absolute; Ray joined/started on first need, shut down on exit."""
    from harness.cluster.connection import ClusterSession

    return ClusterSession(cfg, log)


def _track_trajectory(cfg, manifest: dict, log: Log) -> None:
    from harness import tracking

    if tracking.enabled(cfg):
        tracking.log_trajectory(cfg, manifest, log=log)


# --------------------------------------------------------------------------- stages

def teachers(cfg, log: Log = _print) -> dict[str, dict]:
    """``ckd teachers``: every (arch x seed) trajectory; returns ``{name: manifest}``."""
    if is_local(cfg):
        from harness.teachers import run_teachers

        manifests = run_teachers(cfg, log=log)
        for m in manifests:
            _track_trajectory(cfg, m, log)
        return {m["name"]: m for m in manifests}
    with ray_session(cfg, log) as session:
        return _teachers_on_ray(session, log)


def _teachers_on_ray(session, log: Log, scorer=None) -> dict[str, dict]:
    from harness.cluster.trajectories import TrajectoryRunner

    def on_finished(name: str, manifest: dict) -> None:
        _track_trajectory(session.cfg, manifest, log)
        if scorer is not None:
            scorer.submit(name)

    runner = TrajectoryRunner(session, log, on_finished=on_finished, on_tick=scorer.poll if scorer is not None else None)
    if scorer is not None:
        scorer.ready = runner.all_started
    return runner.run()


def score(cfg, log: Log = _print) -> dict:
    """``ckd score``: score every finished trajectory, select teachers."""
    if is_local(cfg):
        from harness import tracking
        from harness.experiment import open_store
        from harness.scoring import read_scores, run_scoring

        summary = run_scoring(cfg, log=log)
        if tracking.enabled(cfg):
            for name in summary:
                tracking.log_scores(cfg, read_scores(open_store(cfg), name), name, log=log)
        return summary
    from harness.cluster.scorer import score_all

    with ray_session(cfg, log) as session:
        return score_all(session, log)


def sweep(cfg, log: Log = _print) -> list[dict]:
    """``ckd sweep``: the teacher-choice x hyperparameter x seed grid; returns its result rows."""
    from harness.cluster.sweep import run_sweep, run_sweep_local

    if is_local(cfg):
        return run_sweep_local(cfg, log)
    with ray_session(cfg, log) as session:
        return run_sweep(session, log)


def leaderboard(cfg, log: Log = _print) -> str:
    """``ckd leaderboard``: write leaderboard.{md,csv,html}, log it to W&B, return the text table."""
    from harness import tracking
    from harness.experiment import open_store
    from harness.report import build_leaderboard, write_leaderboard

    text = write_leaderboard(cfg, log=log)
    if tracking.enabled(cfg):
        tracking.log_leaderboard(cfg, build_leaderboard(open_store(cfg).read_results()), log=log)
        tracking.report_offline_runs(cfg, log=log)
    return text


def plot(cfg, log: Log = _print) -> list:
    """``ckd plot``: accuracy vs teacher epoch, information plane, ensemble comparison."""
    from harness.report import make_plots

    return make_plots(cfg, log=log)


def run_pipeline(cfg, log: Log = _print, plots: bool = True) -> str:
    """``ckd run``: teachers -> score -> sweep -> plots + leaderboard; returns the table text."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    if is_local(cfg):
        teachers(cfg, log)
        times["teachers"] = time.perf_counter() - t0
        score(cfg, log)
        times["score"] = time.perf_counter() - t0 - times["teachers"]
        t1 = time.perf_counter()
        sweep(cfg, log)
        times["sweep"] = time.perf_counter() - t1
    else:
        from harness.cluster.scorer import Scorer
        from harness.cluster.sweep import run_sweep

        with ray_session(cfg, log) as session:
            scorer = Scorer(session, log)
            try:
                _teachers_on_ray(session, log, scorer=scorer)
                times["teachers"] = time.perf_counter() - t0
                scorer.wait()
            finally:
                scorer.close()
            times["score (after teachers)"] = time.perf_counter() - t0 - times["teachers"]
            t1 = time.perf_counter()
            run_sweep(session, log)
            times["sweep"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    if plots:
        try:
            plot(cfg, log)
        except Exception as e:  # a plot must not hide the leaderboard
            log(f"[plot] skipped: {type(e).__name__}: {e}")
    text = leaderboard(cfg, log)
    times["report"] = time.perf_counter() - t2
    log("[run] stage times: " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()) + f"; total {time.perf_counter() - t0:.1f}s")
    log(text)
    return text
