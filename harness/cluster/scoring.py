"""The scorer actor (the Ray side of ``harness/scoring``): holds the scoring sample once and
scores trajectories as they finish.

``ScorerActor`` builds ``harness.scoring.sample.build_scoring_data(cfg)`` (the fixed validation sample)
once, then ``score(name)`` calls the core ``score_trajectory`` with it: per trajectory one shared
pass over all its checkpoints, estimators, normalization, selection, and an atomic write of
``scores/<trajectory>.json``. Calls queue on the actor, so under ``ckd run`` the driver submits
each trajectory the moment it finishes and scoring overlaps the training of the others.

``Scorer`` is the driver side: it starts an actor on the first trajectory that needs scoring
(a trajectory whose scores file is already fresh is not sent) and up to ``cluster.scorers``
actors while every running one is busy, sends each trajectory to the least-loaded actor,
collects results as they come, and frees the actors' resources when closed, or (``release_idle``,
set by ``ckd run`` with overlap) whenever none has work, so that students of finished
trajectories get the CPU while later teachers train (the pipeline logs the score tables to
W&B). Scores sit on the critical path of ``selected*`` students, so on a cluster that finishes
many trajectories at once one actor would serialize them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from harness.cluster.connection import ClusterSession, config_from_dict
from harness.cluster.errors import ClusterError, get_result
from harness.cluster.teachers import logs_dir
from harness.config import to_dict
from harness.experiment import open_store, stage_threads, trajectory_specs
from harness.logs import file_log
from harness.progress import StageLine, publish, slot_eta

logger = logging.getLogger(__name__)


class ScorerActor:
    def __init__(self, cfg: dict) -> None:
        import torch

        from harness.scoring.sample import build_scoring_data

        self.cfg = config_from_dict(cfg)
        self.cfg.threads = stage_threads(self.cfg, "scorer")
        torch.set_num_threads(self.cfg.threads)
        self.store = open_store(self.cfg)
        self.log_path = logs_dir(self.cfg) / "scorer.log"
        with file_log(self.log_path):
            self.data = build_scoring_data(self.cfg)  # held once for every trajectory
            logger.info(
                f"[score] scoring sample: {len(self.data)} validation samples of {self.data.info.get('dataset')}"
            )

    def score(self, name: str) -> dict:
        from harness.scoring.runner import score_trajectory

        with file_log(self.log_path):
            return score_trajectory(self.cfg, self.store, name, self.data)

    def data_id(self) -> int:
        """Identity of the held sample (the same object across calls: built once)."""
        return id(self.data)


class Scorer:
    """Driver side of the scorer actor (created lazily, on the first trajectory to score)."""

    def __init__(self, session: ClusterSession) -> None:
        self.session, self.cfg = session, session.cfg
        self.actors: list[Any] = []
        self.started: list[Any] = []  # per actor: a call that returns once it runs
        self.assigned: dict[Any, int] = {}  # call -> actor index
        self.refs: dict[Any, str] = {}
        self.results: dict[str, dict] = {}
        self.failures: dict[str, BaseException] = {}
        # ready(): may the actor take its resources now? The pipeline says no while trajectories
        # still wait for a slot, so an idle scorer never holds back training.
        self.ready: Callable[[], bool] = lambda: True
        # release_idle: kill the actors whenever nothing is queued (``ckd run`` with overlap sets it),
        # so an idle scorer does not keep a CPU from students while later teachers still train; the
        # next trajectory starts a fresh actor (seconds) on its way
        self.release_idle = False
        self.deferred: list[str] = []
        # progress: one [score] line per interval; a call runs once its actor finished the one before
        self.expected = len(trajectory_specs(self.cfg))  # ``run_scoring`` sets what it submits
        self.clock: Callable[[], float] = time.monotonic
        self.sent_at: dict[Any, float] = {}
        self.free_at: list[float] = []  # per actor: when its last call returned
        self.durations: list[float] = []
        self.stage = StageLine(logger, self.cfg.cluster.progress_interval_s, lambda: self.clock(), bar_mode=True)
        publish("scoring", None, tail_s=None)  # a stage of the run from now on (ETA unknown yet)

    @property
    def actor(self):
        """The first scorer actor (None before any trajectory was sent)."""
        return self.actors[0] if self.actors else None

    def waiting_for_slot(self) -> bool:
        """Has the scorer work that waits for an actor (deferred, or an actor with queued work not
        placed yet)? The sweep holds new students back meanwhile: scores are on the critical path,
        students of most choices are not (``ReadyRuns``)."""
        if self.deferred:
            return True
        pending = [self.started[i] for i in set(self.assigned.values())]
        if not pending:
            return False
        import ray

        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        return len(ready) < len(pending)

    def submit(self, name: str, force: bool = False) -> None:
        if name in self.results or name in self.refs.values() or name in self.deferred:
            return
        from harness.scoring.freshness import scores_fresh

        if not force and scores_fresh(self.cfg, name):
            logger.info(f"[score] {name}: scores are up to date; skipping")
            self.results[name] = {"skipped": True}
            return
        if self.actor is None and not self.ready():
            self.deferred.append(name)
            logger.debug(f"[score] {name}: waiting until every trajectory has a slot, then scoring")
            return
        self._send(name)

    def _send(self, name: str) -> None:
        load = [sum(1 for i in self.assigned.values() if i == a) for a in range(len(self.actors))]
        if not self.actors or (min(load) > 0 and len(self.actors) < self.cfg.cluster.scorers):
            self._start_actor()
            load.append(0)
        index = load.index(min(load))
        ref = self.actors[index].score.remote(name)
        self.refs[ref], self.assigned[ref] = name, index
        self.sent_at[ref] = self.clock()
        logger.debug(f"[score] {name}: queued on scorer actor {index + 1}/{len(self.actors)}")

    def _start_actor(self) -> None:
        import ray

        res = self.session.resources("scorer")  # joins/starts the cluster now
        actor = (
            ray.remote(ScorerActor)
            .options(**res, max_restarts=self.cfg.cluster.max_actor_restarts, max_task_retries=-1)
            .remote(to_dict(self.cfg))
        )
        self.actors.append(actor)
        self.started.append(actor.data_id.remote())
        self.free_at.append(self.clock())
        (logger.info if len(self.actors) == 1 else logger.debug)(
            f"[score] scorer actor {len(self.actors)} started ({res['num_cpus']:g} CPU, {res['num_gpus']:g} GPU); "
            f"log in {logs_dir(self.cfg) / 'scorer.log'}"
        )

    def poll(self, timeout: float = 0.0) -> None:
        """Send deferred trajectories once ready; collect finished calls (non-blocking by default)."""
        if self.deferred and (self.actor is not None or self.ready()):
            for name in self.deferred:
                self._send(name)
            self.deferred = []
        if not self.refs:
            return
        import ray

        ready, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=timeout)
        for ref in ready:
            self._collect(ref)
        self.show()
        if self.release_idle and self.actors and not self.refs and not self.deferred:
            logger.debug(f"[score] {len(self.actors)} idle scorer actor(s) released: their resources go to students")
            self.close()

    def _collect(self, ref) -> None:
        name = self.refs.pop(ref)
        index = self.assigned.pop(ref, None)
        now, sent = self.clock(), self.sent_at.pop(ref, None)
        if index is not None and sent is not None:
            began, self.free_at[index] = max(sent, self.free_at[index]), now
            self.durations.append(now - began)
        summary, error = get_result(
            ref,
            lambda e: ClusterError(
                f"scoring {name}: the scorer actor died and the cluster.max_actor_restarts="
                f"{self.cfg.cluster.max_actor_restarts} restarts are used up ({type(e).__name__}). Give it more "
                f"memory/CPUs (cluster.scorer.*) or raise the restarts, then re-run `ckd score`. "
                f"Log: {logs_dir(self.cfg) / 'scorer.log'}"
            ),
        )
        if error is not None:
            self.failures[name] = error
            logger.warning(f"[score] {name}: FAILED ({type(error).__name__}: {error})")
            return
        self.results[name] = summary
        from harness.scoring.runner import pick_text  # picks with confidence; "unstable" below 0.5

        picks = (
            pick_text(summary["picks"])
            if "picks" in summary
            else " ".join(f"{s}=e{v}" for s, v in summary.get("selected", {}).items())
        )
        ens = " ".join(f"K={k}:{v}" for k, v in summary.get("selected_ensemble", {}).items())
        logger.info(
            f"[score] {name}: selected {picks or '-'}; ensembles {ens or '-'} "
            f"({summary.get('timings', {}).get('total_s', 0):.1f}s)"
        )

    def running(self) -> dict[int, Any]:
        """Per busy actor, the call it runs now (calls queue on an actor in the order sent)."""
        first: dict[int, Any] = {}
        for ref, index in self.assigned.items():
            first.setdefault(index, ref)
        return first

    def eta(self) -> float | None:
        """Seconds until the submitted trajectories are scored: the running calls at the mean
        measured time per trajectory, the queued ones after them on ``cluster.scorers`` actors."""
        if not self.refs and not self.deferred:
            return 0.0
        if not self.durations:
            return None
        mean, now = sum(self.durations) / len(self.durations), self.clock()
        left = [max(0.0, mean - (now - max(self.sent_at[r], self.free_at[i]))) for i, r in self.running().items()]
        queued = len(self.refs) + len(self.deferred) - len(left)
        return slot_eta(left, [mean] * queued, slots=self.cfg.cluster.scorers)

    def show(self, final: bool = False) -> None:
        """Publish the stage's ETA and log its ``[score]`` line when due."""
        busy = len(self.running())
        queued = len(self.refs) + len(self.deferred) - busy
        total = max(self.expected, len(self.results) + len(self.failures) + len(self.refs) + len(self.deferred))
        later = total - len(self.results) - len(self.failures) - len(self.refs) - len(self.deferred)
        mean = sum(self.durations) / len(self.durations) if self.durations else None
        eta = self.eta()
        final = final or (not later and not self.refs and not self.deferred)
        publish("scoring", eta, tail_s=mean if later else 0.0, done=final)
        failed = f", {len(self.failures)} FAILED" if self.failures else ""
        waiting = f", {later} waiting for teachers" if later else ""
        self.stage.offer(
            f"[score] {len(self.results)}/{total} scored, {busy} running, {queued} queued{failed}{waiting}",
            eta,
            final=final,
        )

    def wait(self) -> dict[str, dict]:
        """Block until every submitted trajectory is scored; raise if any failed."""
        self.ready = lambda: True
        while self.refs or self.deferred:
            self.poll(timeout=1.0)
        self.show(final=True)
        if self.failures:
            first = next(iter(self.failures.values()))
            if len(self.failures) == 1:
                raise first
            raise ClusterError(f"scoring failed for {', '.join(self.failures)}; the first: {first}") from first
        return self.results

    def close(self) -> None:
        if self.actors:
            import ray

            for actor in self.actors:
                ray.kill(actor)
            self.actors, self.started, self.assigned, self.free_at = [], [], {}, []


def run_scoring(session: ClusterSession) -> dict[str, dict]:
    """``ckd score`` on Ray: every finished trajectory of the store (of this data set) in the actor."""
    cfg = session.cfg
    store = open_store(cfg)
    scorer = Scorer(session)
    try:
        todo = []
        for t in store.trajectories():
            if not t.is_finished():
                logger.info(f"[score] {t.name}: not finished; skipping (run `ckd teachers CONFIG` to finish it)")
            elif t.manifest().get("dataset") not in (None, cfg.data.name):
                logger.info(
                    f"[score] {t.name}: trained on {t.manifest().get('dataset')}, "
                    f"not data.name={cfg.data.name}; skipping"
                )
            else:
                todo.append(t.name)
        if not todo:
            logger.info(
                f"[score] no finished trajectories in {store.trajectories_dir}; run `ckd teachers CONFIG` first"
            )
            return {}
        scorer.expected = len(todo)
        for name in todo:
            scorer.submit(name)
        return scorer.wait()
    finally:
        scorer.close()
