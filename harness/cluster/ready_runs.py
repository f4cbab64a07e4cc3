"""Stage overlap: hand Tune each sweep run as soon as its teachers (and their scores) exist.

Without it, ``ckd run`` waits for every trajectory before the first student starts, so a cluster
idles at the stage barrier (100 trajectories on 64 GPUs leave 28 GPUs idle through the second
wave). ``ReadyRuns`` is a Tune ``Searcher``: runs are grouped by what they need (the teacher
trajectories their choice resolves to, and the scores file for ``selected*`` choices), and a
group is released once the store shows it finished (and freshly scored). The teachers and the
scorer run meanwhile in a driver thread (``harness/cluster/pipeline.py``). ``sweep.overlap=false``
keeps the strict order: all teachers, then scoring, then the sweep.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from harness.config import ExperimentConfig, seed_list
from harness.experiment import open_store
from harness.runs import Run, RunResolver
from harness.teacher_choices import choice_of

logger = logging.getLogger(__name__)
RECHECK_S = 1.0  # how often the store is asked again about one unfinished trajectory


class TeachersStatus:
    """What the teachers thread tells the searcher: done (finished or failed), which failed, and
    ``hold()``: should new students wait (a trajectory or the scorer still waits for a slot)?"""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.failed: set[str] = set()
        self.hold: Callable[[], bool] = lambda: False
        self._held = (0.0, False)

    def holding(self) -> bool:
        """``hold()``, asked at most once per ``RECHECK_S`` (Tune asks for suggestions often)."""
        if self.done.is_set():
            return False
        now = time.monotonic()
        if now - self._held[0] >= RECHECK_S:
            self._held = (now, bool(self.hold()))
        return self._held[1]


class Readiness:
    """Is a grid run's teacher ready? Trajectories finished, and scored when the choice needs it."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg, self.store = cfg, open_store(cfg)
        self.seeds = seed_list(cfg.teacher)
        self._yes: set[tuple[str, str]] = set()
        self._asked: dict[tuple[str, str], float] = {}

    def needs(self, run: dict) -> tuple[tuple[str, ...], bool]:
        """(trajectories the run's teacher choice resolves into, whether it needs their scores)."""
        choice = choice_of(str(run["teacher_choice"]))
        if choice.is_none:
            return (), False
        names = choice.trajectories(run["teacher_arch"], self.cfg.data.name, int(run["teacher_seed"]), self.seeds)
        return names, choice.needs_scores

    def _check(self, what: str, name: str, fresh: bool = False) -> bool:
        key = (what, name)
        if key in self._yes:
            return True
        if not fresh and time.monotonic() - self._asked.get(key, -1e9) < RECHECK_S:
            return False
        self._asked[key] = time.monotonic()
        if what == "finished":
            ok = self.store.trajectory(name).is_finished()
        else:
            from harness.scoring.freshness import scores_fresh

            ok = scores_fresh(self.cfg, name)
        if ok:
            self._yes.add(key)
        return ok

    @property
    def known_finished(self) -> set[str]:
        """The trajectories the store has said are finished."""
        return {name for what, name in self._yes if what == "finished"}

    def ready(self, needs: tuple[tuple[str, ...], bool], fresh: bool = False) -> bool:
        """``fresh``: ask the store now, even if it was asked less than ``RECHECK_S`` ago."""
        names, scored = needs
        return all(self._check("finished", n, fresh) for n in names) and (
            not scored or all(self._check("scored", n, fresh) for n in names)
        )


class ReadyRuns(Searcher):
    """A Tune searcher over a fixed list of runs that releases each run once its teacher is ready.

    Each suggestion is a pack (``{"runs": [...]}``): ready runs of one student architecture, up to
    ``pack_sizes[arch]`` of them, taken across every group that is ready at that moment."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        runs: list[dict],
        status: TeachersStatus | None = None,
        metric: str = "val_acc",
        mode: str = "max",
        pack_sizes: dict[str, int] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.readiness, self.status = Readiness(cfg), status
        self.pack_sizes = dict(pack_sizes or {})
        self.pending: dict[tuple, list[dict]] = {}
        self.released: set[tuple] = set()
        self.resolver: RunResolver | None = None
        for run in runs:
            self.pending.setdefault(self.readiness.needs(run), []).append(run)

    def __getstate__(self) -> dict:  # pickled into Tune's experiment state; the thread link stays here
        return {**self.__dict__, "status": None, "resolver": None}

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.status is not None and self.pending and self.status.holding():
            return None  # teachers and the scorer first: a student released now would take their slot
        ready = [needs for needs in list(self.pending) if self.readiness.ready(needs)]
        pack = self._take(ready) if ready else []
        if pack:
            return {"runs": pack}  # (a ready group whose runs were all skipped gives no pack)
        if not self.pending:
            return Searcher.FINISHED
        if self.status is not None and self.status.done.is_set():
            self._drop_unreachable()
            return Searcher.FINISHED if not self.pending else None
        return None

    def _take(self, ready: list[tuple]) -> list[dict]:
        """A pack of ready runs: the first ready run's student architecture, up to its pack size."""
        arch = self.pending[ready[0]][0]["student_arch"]
        size, pack = self.pack_sizes.get(arch, 1), []
        for needs in ready:
            if needs not in self.released:
                self.released.add(needs)
                self.pending[needs] = self._resolvable(self.pending[needs])
                logger.debug(
                    f"[sweep] ready: {', '.join(needs[0]) or 'no teacher'}{' (scored)' if needs[1] else ''}; "
                    f"releasing {len(self.pending[needs])} run(s)"
                )
            runs = self.pending[needs]
            pack += [r for r in runs if r["student_arch"] == arch][: size - len(pack)]
            runs[:] = [r for r in runs if not any(r is p for p in pack)]
            if not runs:
                del self.pending[needs]
            if len(pack) >= size:
                break
        return pack

    def _resolvable(self, runs: list[dict]) -> list[dict]:
        """The runs of a ready group that resolve; the others (a degenerate or failed selection,
        a missing checkpoint) are recorded as skipped with their reason and never launched."""
        from harness.sweep import PlannedRun, record_skips

        if self.resolver is None:
            self.resolver = RunResolver(self.readiness.cfg)
        keep, skipped = [], []
        for run in runs:
            got = self.resolver.resolve_or_reason(Run.from_dict(self.readiness.cfg, run))
            if isinstance(got, str):
                skipped.append(PlannedRun(Run.from_dict(self.readiness.cfg, run), "", False, skip=got))
            else:
                keep.append(run)
        if skipped:
            record_skips(self.readiness.cfg, skipped)
        return keep

    def waiting_for(self) -> str | None:
        """What the runs not yet released wait for, from what the store last said (no store
        reads): ``teachers (s1)``, ``the scorer (s0, s2)``, or a slot the teachers and scorer hold."""
        known = self.readiness.known_finished
        teachers = {n for names, _ in list(self.pending) for n in names if n not in known}
        scores = {n for names, scored in list(self.pending) if scored for n in names if n in known}
        short = lambda names: ", ".join(sorted(n.rsplit("-", 1)[-1] for n in names))  # noqa: E731
        parts = [f"teachers ({short(teachers)})"] * bool(teachers) + [f"the scorer ({short(scores)})"] * bool(scores)
        if not parts and self.pending and self.status is not None and self.status.holding():
            parts = ["a slot (the teachers and the scorer go first)"]
        return " and ".join(parts) or None

    def _drop_unreachable(self) -> None:
        """The teachers are done: runs whose teachers failed (or never got scores) will not start."""
        for needs in [n for n in self.pending if not self.readiness.ready(n, fresh=True)]:
            runs = self.pending.pop(needs)
            logger.warning(
                f"[sweep] {len(runs)} run(s) need {', '.join(needs[0])}"
                f"{' and their scores' if needs[1] else ''}, which did not finish; they are not started"
            )

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            state: dict[str, Any] = pickle.load(f)
        self.__dict__.update({k: v for k, v in state.items() if k != "status"})
