"""The one orchestrator: the stages behind the CLI verbs, in this process or on Ray.

``cluster.mode=local`` (``--local``) runs the core stages one after another in this process;
``cluster.mode=ray`` hands them to ``harness/cluster/pipeline.py``, which trains the teachers in
Ray actors, scores each trajectory the moment it finishes and runs the sweep as a Tune
experiment. ``run_pipeline`` = ``ckd run``: teachers -> score -> sweep -> plots + leaderboard,
every stage idempotent. Ray is imported only on the Ray path, so the GPU machines (no Ray) and
``benchmarks/bench_ray_overhead.py``'s baseline run the same code locally.
"""

from __future__ import annotations

import logging
import time

from harness import tracking
from harness.config import ClusterMode, ExperimentConfig
from harness.experiment import open_store

logger = logging.getLogger(__name__)


def is_local(cfg: ExperimentConfig) -> bool:
    return cfg.cluster.mode == ClusterMode.local


def teachers(cfg: ExperimentConfig) -> dict[str, dict]:
    """``ckd teachers``: every (arch x seed) trajectory; returns ``{name: manifest}``."""
    if not is_local(cfg):
        from harness.cluster import pipeline as on_ray

        return on_ray.teachers(cfg)
    from harness.teachers import run_teachers

    manifests = run_teachers(cfg)
    if tracking.enabled(cfg):
        for m in manifests:
            tracking.log_trajectory(cfg, m)
    return {m["name"]: m for m in manifests}


def score(cfg: ExperimentConfig) -> dict:
    """``ckd score``: score every finished trajectory, select teachers."""
    if not is_local(cfg):
        from harness.cluster import pipeline as on_ray

        return on_ray.score(cfg)
    from harness.scoring import read_scores, run_scoring

    summary = run_scoring(cfg)
    if tracking.enabled(cfg):
        for name in summary:
            tracking.log_scores(cfg, read_scores(open_store(cfg), name), name)
    return summary


def sweep(cfg: ExperimentConfig) -> list[dict]:
    """``ckd sweep``: the teacher-choice x hyperparameter x seed grid; returns its result rows."""
    if not is_local(cfg):
        from harness.cluster import pipeline as on_ray

        return on_ray.sweep(cfg)
    from harness.sweep import run_sweep

    return run_sweep(cfg)


def distill(cfg: ExperimentConfig) -> dict:
    """``ckd distill``: one student, always in this process (a single run needs no cluster)."""
    from harness.distill import distill_student

    row = distill_student(cfg)
    open_store(cfg).compact_results()  # results.jsonl / results.csv show the new row
    return row


def _report(cfg: ExperimentConfig, plots: bool = True):
    """Write the report (leaderboard.{md,csv,html} with paired statistics, claims.{md,csv},
    selectors.{md,csv}, plots) and log it to W&B; returns the ``Report``."""
    from harness.report import write_report

    open_store(cfg).compact_results()  # results.jsonl / results.csv: every row, unreadable ones set aside
    rep = write_report(cfg, plots=plots)
    if tracking.enabled(cfg) and rep.board:
        tracking.log_leaderboard(cfg, rep.board, claims=rep.claims, selectors=rep.selectors, plots=rep.plots)
        tracking.report_offline_runs(cfg)
    return rep


def leaderboard(cfg: ExperimentConfig, plots: bool = True) -> str:
    """``ckd leaderboard``: the whole report (see ``_report``); returns the text table."""
    return _report(cfg, plots).text


def claims(cfg: ExperimentConfig) -> str:
    """``ckd claims``: the paper's three claims checked on the results; writes claims.{md,csv}."""
    from harness.report import build_report, render_claims
    from harness.store import atomic_write_bytes

    rep = build_report(cfg)
    if rep.board:
        for fmt, ext in (("markdown", "md"), ("csv", "csv")):
            atomic_write_bytes(open_store(cfg).root / f"claims.{ext}", render_claims(rep.claims, fmt).encode("utf-8"))
    return render_claims(rep.claims, "text") if rep.board else rep.text


def plot(cfg: ExperimentConfig) -> list:
    """``ckd plot``: accuracy vs teacher epoch, information plane, ensemble comparison."""
    from harness.report import make_plots

    return make_plots(cfg)


def run_pipeline(cfg: ExperimentConfig, plots: bool = True) -> str:
    """``ckd run``: teachers -> score -> sweep -> report; returns the leaderboard text, followed
    by the claims table when the grid holds what a claim needs."""
    from harness.report.report import claims_text

    t0 = time.perf_counter()
    if is_local(cfg):
        times = _run_stages_locally(cfg)
    else:
        from harness.cluster import pipeline as on_ray

        times = on_ray.run_stages(cfg)
    t2 = time.perf_counter()
    rep = _report(cfg, plots)  # leaderboard, claims, selector evaluation, plots, html
    times["report"] = time.perf_counter() - t2
    logger.info(
        "[run] stage times: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in times.items())
        + f"; total {time.perf_counter() - t0:.1f}s"
    )
    claims = claims_text(rep)  # only when the grid holds what at least one claim needs
    return rep.text + (f"\nThe paper's claims:\n{claims}" if claims else "")


def _run_stages_locally(cfg: ExperimentConfig) -> dict[str, float]:
    times: dict[str, float] = {}
    for name, stage in (("teachers", teachers), ("score", score), ("sweep", sweep)):
        began = time.perf_counter()
        stage(cfg)
        times[name] = time.perf_counter() - began
    return times
