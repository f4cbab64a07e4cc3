"""The one orchestrator: the stages behind the CLI verbs, in this process or on Ray.

``STAGES`` is the stage table: each stage's implementation in this process and its Ray one
(``harness/cluster/pipeline.py``: trajectories in Ray actors, scored the moment they finish, the
sweep as a Tune experiment) side by side, with the tracking hook that logs what the stage made.
``cluster.mode=local`` (``--local``) picks the first, ``cluster.mode=ray`` the second; Ray is
imported only on the Ray path, so the GPU machines (no Ray) and
``benchmarks/bench_ray_overhead.py``'s baseline run the same code locally. A stage's hook runs
once, here, after the stage, whichever side ran it (W&B runs are idempotent: a re-run logs
nothing twice). Result rows are compacted into ``results.{jsonl,csv}`` once per verb: after a
``sweep``/``distill`` verb, or by the report (``ckd run``, ``ckd leaderboard``).
``run_pipeline`` = ``ckd run``: teachers -> score -> sweep -> report, every stage idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import tracking, tracking_tables
from harness.config import ClusterMode, ExperimentConfig
from harness.experiment import open_store, trajectory_specs

logger = logging.getLogger(__name__)

StageFn = Callable[[ExperimentConfig], Any]
Hook = Callable[[ExperimentConfig, Any], None]


def is_local(cfg: ExperimentConfig) -> bool:
    return cfg.cluster.mode == ClusterMode.local


@dataclass(frozen=True)
class Stage:
    """One stage: ``local`` runs it in this process, ``on_ray`` on the cluster (None: always
    here); ``track`` logs its outcome to W&B; ``writes_rows``: its verb compacts the results."""

    name: str
    local: StageFn
    on_ray: StageFn | None
    track: Hook
    writes_rows: bool = False

    def run(self, cfg: ExperimentConfig, compact: bool = True) -> Any:
        """Run the stage on its side, fire its tracking hook once, compact the rows it wrote
        (also those of a stage that failed part-way)."""
        compact = compact and self.writes_rows
        try:
            result = (self.local if self.on_ray is None or is_local(cfg) else self.on_ray)(cfg)
        finally:
            if compact:
                compact_results(cfg)
        self.log(cfg, result)
        return result

    def log(self, cfg: ExperimentConfig, result: Any) -> None:
        """The tracking hook, when tracking is on; a failure is logged, never raised."""
        if not tracking.enabled(cfg):
            return
        try:
            self.track(cfg, result)
        except Exception as e:  # tracking never stops the pipeline
            logger.info(f"[tracking] the {self.name} stage was not logged: {type(e).__name__}: {e}")


def compact_results(cfg: ExperimentConfig) -> int:
    """``results.jsonl`` / ``results.csv`` from every row file, unreadable ones set aside: the one
    compaction of a verb."""
    return open_store(cfg).compact_results()


def _ray():
    """``harness.cluster.pipeline``, imported only on the Ray path (Ray is optional)."""
    from harness.cluster import pipeline as on_ray

    return on_ray


# ---------------------------------------------------------------------------------------------
# the stages in this process


def _teachers_here(cfg: ExperimentConfig) -> dict[str, dict]:
    from harness.teachers import run_teachers

    return {m["name"]: m for m in run_teachers(cfg)}


def _score_here(cfg: ExperimentConfig) -> dict:
    from harness.scoring.runner import run_scoring

    return run_scoring(cfg)


def _sweep_here(cfg: ExperimentConfig) -> list[dict]:
    from harness.sweep import run_sweep

    return run_sweep(cfg)


def _distill_here(cfg: ExperimentConfig) -> dict:
    from harness.distill import distill_student

    return distill_student(cfg)


# ---------------------------------------------------------------------------------------------
# tracking hooks: one per stage event, for both sides (each reads what the stage left in the store)


def _track_teachers(cfg: ExperimentConfig, _result: Any) -> None:
    """One W&B run per finished trajectory of the config."""
    store = open_store(cfg)
    for spec in trajectory_specs(cfg):
        trajectory = store.trajectory(spec.name)
        if trajectory.is_finished():
            tracking.log_trajectory(cfg, trajectory.manifest())


def _track_scores(cfg: ExperimentConfig, _result: Any) -> None:
    """The score table of every scored trajectory of the config."""
    from harness.scoring.scores_file import has_scores, read_scores

    store = open_store(cfg)
    for spec in trajectory_specs(cfg):
        if not has_scores(store, spec.name):
            continue
        try:  # one unreadable scores file does not hide the others
            tracking_tables.log_scores(cfg, read_scores(store, spec.name), spec.name)
        except Exception as e:
            logger.info(f"[tracking] scores of {spec.name} not logged: {e}")


def _track_students(cfg: ExperimentConfig, rows: list[dict] | None) -> None:
    """One W&B run per student trained in this process (on Ray the Tune callback
    ``harness.cluster.sweep_tracking.StudentRuns`` logs each trial as it ends)."""
    if is_local(cfg):
        _track_rows(cfg, rows or [])


def _track_rows(cfg: ExperimentConfig, rows: list[dict]) -> None:
    for row in rows:
        tracking.log_student_row(cfg, row)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("teachers", _teachers_here, lambda cfg: _ray().teachers(cfg), _track_teachers),
        Stage("score", _score_here, lambda cfg: _ray().score(cfg), _track_scores),
        Stage("sweep", _sweep_here, lambda cfg: _ray().sweep(cfg), _track_students, writes_rows=True),
        # one student needs no cluster: always in this process
        Stage("distill", _distill_here, None, lambda cfg, row: _track_rows(cfg, [row]), writes_rows=True),
    )
}


# ---------------------------------------------------------------------------------------------
# the verbs


def teachers(cfg: ExperimentConfig) -> dict[str, dict]:
    """``ckd teachers``: every (arch x seed) trajectory; returns ``{name: manifest}``."""
    return STAGES["teachers"].run(cfg)


def score(cfg: ExperimentConfig) -> dict:
    """``ckd score``: score every finished trajectory, select teachers."""
    return STAGES["score"].run(cfg)


def sweep(cfg: ExperimentConfig) -> list[dict]:
    """``ckd sweep``: the teacher-choice x hyperparameter x seed grid; returns its result rows."""
    return STAGES["sweep"].run(cfg)


def distill(cfg: ExperimentConfig) -> dict:
    """``ckd distill``: one student, always in this process (a single run needs no cluster)."""
    return STAGES["distill"].run(cfg)


def _report(cfg: ExperimentConfig, plots: bool = True, latex: bool = False):
    """Write the report (leaderboard.{md,csv,html} with paired statistics, claims.{md,csv},
    selectors.{md,csv}, plots; ``latex``: leaderboard.tex) and log it to W&B; returns the ``Report``."""
    from harness.report.report import write_report

    compact_results(cfg)
    rep = write_report(cfg, plots=plots, latex=latex)
    if tracking.enabled(cfg) and rep.board:
        tracking_tables.log_leaderboard(cfg, rep.board, claims=rep.claims, selectors=rep.selectors, plots=rep.plots)
        tracking.report_offline_runs(cfg)
    return rep


def _latex_line(rep, latex: bool) -> str:
    """Where ``--latex`` wrote the table (nothing when it was not asked for)."""
    if not latex:
        return ""
    return f"\nLaTeX table: {rep.latex}\n" if rep.latex else "\nLaTeX table: not written (no student results yet)\n"


def leaderboard(cfg: ExperimentConfig, plots: bool = True, latex: bool = False) -> str:
    """``ckd leaderboard``: the whole report (see ``_report``); returns the text table."""
    rep = _report(cfg, plots, latex)
    return rep.text + _latex_line(rep, latex)


def claims(cfg: ExperimentConfig) -> str:
    """``ckd claims``: the paper's three claims checked on the results; writes claims.{md,csv}."""
    from harness.report.claims_console import render_claims_console
    from harness.report.report import build_report, write_claims

    rep = build_report(cfg)
    if not rep.board:
        return rep.text
    write_claims(open_store(cfg).root, rep.claims)
    return render_claims_console(rep.claims)


def plot(cfg: ExperimentConfig) -> list:
    """``ckd plot``: accuracy vs teacher epoch, information plane, ensemble comparison."""
    from harness.report.plots import make_plots

    return make_plots(cfg, str(cfg.report.reported))


def run_pipeline(cfg: ExperimentConfig, plots: bool = True, latex: bool = False) -> str:
    """``ckd run``: teachers -> score -> sweep -> report; returns the leaderboard text, followed
    by the claims table when the grid holds what a claim needs."""
    from harness.report.report import claims_text

    t0 = time.perf_counter()
    try:
        times = _run_stages_locally(cfg) if is_local(cfg) else _run_stages_on_ray(cfg)
    except Exception:
        compact_results(cfg)  # the rows that did finish, in results.{jsonl,csv}
        raise
    t2 = time.perf_counter()
    rep = _report(cfg, plots, latex)  # the one compaction; leaderboard, claims, selector evaluation, plots, html
    times["report"] = time.perf_counter() - t2
    logger.info(
        "[run] stage times: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in times.items())
        + f"; total {time.perf_counter() - t0:.1f}s"
    )
    claims = claims_text(rep)  # only when the grid holds what at least one claim needs
    return rep.text + (f"\nThe paper's claims:\n{claims}" if claims else "") + _latex_line(rep, latex)


PIPELINE = ("teachers", "score", "sweep")  # the stages of ``ckd run``, before the report


def _run_stages_locally(cfg: ExperimentConfig) -> dict[str, float]:
    times: dict[str, float] = {}
    for name in PIPELINE:
        began = time.perf_counter()
        STAGES[name].run(cfg, compact=False)
        times[name] = time.perf_counter() - began
    return times


def _run_stages_on_ray(cfg: ExperimentConfig) -> dict[str, float]:
    """The stages in one cluster session (scoring overlaps training), then their tracking hooks."""
    times = _ray().run_stages(cfg)
    for name in PIPELINE:
        STAGES[name].log(cfg, None)
    return times
