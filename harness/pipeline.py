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
    """Nothing: the sweep logs one W&B run per student while it trains, epoch by epoch (in this
    process ``harness.sweep.run_sweep``, on Ray the Tune callback ``StudentRuns``)."""


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


INCOMPLETE = 3  # exit status of a verb that ran but left runs untrained (skipped or failed)


class Outcome(str):
    """A verb's printed text with its exit status (``INCOMPLETE`` when runs did not train)."""

    exit_status: int = 0


class Rows(list):
    """``ckd sweep``'s result rows with its exit status."""

    exit_status: int = 0


def untrained_status(cfg: ExperimentConfig, entries: list[dict] | None = None, say_each: bool = True) -> int:
    """0 when every run of the grid trained; else ``INCOMPLETE`` after one console line per
    failed run (``say_each``; skipped runs were said before launch) and one summary line."""
    from harness.report.not_trained import not_trained, summary

    entries = not_trained(cfg) if entries is None else entries
    if not entries:
        return 0
    for e in entries if say_each else []:
        if e["status"] == "failed":
            logger.error(f"[sweep] FAILED {e['label']}: {e['reason']} (traceback: {e['where']})")
    logger.warning(
        f"[run] {summary(entries)}: records in {open_store(cfg).root}/failures (ckd status CONFIG lists them); "
        f"exit status {INCOMPLETE}"
    )
    return INCOMPLETE


def sweep(cfg: ExperimentConfig) -> list[dict]:
    """``ckd sweep``: the teacher-choice x hyperparameter x seed grid; returns its result rows
    (``Rows``: exit status ``INCOMPLETE`` when a run was skipped or failed)."""
    rows = Rows(STAGES["sweep"].run(cfg))
    rows.exit_status = untrained_status(cfg)
    return rows


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
    by the claims table when the grid holds what a claim needs (an ``Outcome``: its exit status
    says whether every run trained). The report is written even when a stage raised (then the
    error is raised after it)."""
    from harness import adaptive
    from harness.report.report import claims_text

    t0 = time.perf_counter()
    error: Exception | None = None
    times: dict[str, float] = {}
    try:
        if adaptive.is_adaptive(cfg):  # rounds until decided (harness/adaptive.py)
            _run_adaptive(cfg, times)
        else:
            times = _run_stages(cfg)
    except Exception as e:
        error = e
        logger.error(f"[run] stopped by {type(e).__name__}; writing the report of what finished")
    try:
        cfg = adaptive.current_config(cfg)  # an adaptive sweep reports its latest round
    except Exception as e:  # an unreadable journal: the error says which file; report nothing more
        raise error or e from None
    t2 = time.perf_counter()
    _store_stage_times(cfg, times, t2 - t0)
    try:
        rep = _report(cfg, plots, latex)  # the one compaction; leaderboard, claims, selector evaluation, plots, html
    except Exception as e:
        if error is None:
            raise
        logger.error(f"[run] the report failed too ({type(e).__name__}: {e})")
        raise error from None
    times["report"] = time.perf_counter() - t2
    logger.info(
        "[run] stage times: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in times.items())
        + f"; total {time.perf_counter() - t0:.1f}s"
    )
    if error is not None:
        raise error
    claims = claims_text(rep)  # only when the grid holds what at least one claim needs
    out = Outcome(rep.text + (f"\nThe paper's claims:\n{claims}" if claims else "") + _latex_line(rep, latex))
    out.exit_status = untrained_status(cfg, rep.not_trained, say_each=False)  # the report text lists them
    return out


def _store_stage_times(cfg: ExperimentConfig, times: dict[str, float], total_s: float) -> None:
    """``logs/stage_times.json``: the stages' wall times, for the HTML report's Run section;
    rewritten whole by the driver, its one writer (on an object store: one PUT, nothing appended)."""
    import datetime as dt

    from harness.fileio import atomic_write_json
    from harness.report.html import STAGE_TIMES

    finished = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    path = open_store(cfg).root / "logs" / STAGE_TIMES
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"stages": [[k, v] for k, v in times.items()], "total_s": total_s, "finished": finished})


PIPELINE = ("teachers", "score", "sweep")  # the stages of ``ckd run``, before the report


def _run_stages(cfg: ExperimentConfig) -> dict[str, float]:
    return _run_stages_locally(cfg) if is_local(cfg) else _run_stages_on_ray(cfg)


def _run_adaptive(cfg: ExperimentConfig, times: dict[str, float]) -> None:
    """The rounds of an adaptive sweep, then (once) its comparison with the fixed design of the
    same power, by simulation (``harness/adaptive_sim.py``)."""
    from harness import adaptive
    from harness.adaptive_sim import fixed_designs

    _, journal = adaptive.run_rounds(cfg, lambda round_cfg: _add_times(times, _run_stages(round_cfg)))
    if journal.get("stopped") and "fixed" not in journal and journal.get("costs"):
        logger.info("[adaptive] simulating the design at the observed differences for the fixed-design comparison")
        adaptive.save_fixed_designs(cfg, journal, fixed_designs(journal))


def _add_times(total: dict[str, float], times: dict[str, float]) -> None:
    """Stage times summed over an adaptive sweep's rounds."""
    for k, v in times.items():
        total[k] = total.get(k, 0.0) + v


def _run_stages_locally(cfg: ExperimentConfig) -> dict[str, float]:
    """Every stage in turn; a stage that fails part-way (one trajectory's scoring) does not stop
    the next (its runs that cannot train are skipped with the reason); its error is raised last."""
    times: dict[str, float] = {}
    error: Exception | None = None
    for name in PIPELINE:
        began = time.perf_counter()
        try:
            STAGES[name].run(cfg, compact=False)
        except Exception as e:
            error = error or e
            logger.error(f"[run] the {name} stage failed ({type(e).__name__}); going on with what it finished")
        times[name] = time.perf_counter() - began
    if error is not None:
        raise error
    return times


def _run_stages_on_ray(cfg: ExperimentConfig) -> dict[str, float]:
    """The stages in one cluster session (scoring overlaps training), then their tracking hooks."""
    times = _ray().run_stages(cfg)
    for name in PIPELINE:
        STAGES[name].log(cfg, None)
    return times
