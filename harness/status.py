"""``ckd status``: what is done, running and queued, read from the store alone.

No Ray, no training, no data: it reads manifests, scores files, result rows, failure records and
lock files, so it is fast and safe while a sweep runs in another process. Whether a lock (a
teacher trajectory's, a run's lease: ``harness/leases.py``) is held is read from ``/proc/locks``
(the kernel's list of ``flock`` holders, nothing taken); where that list is not available, a
shared lock is tried and let go at once. ``sweep_state`` and ``measured_rates`` also serve
``--dry-run`` (``harness/dryrun.py``).

A sweep run is *done* (a result row), *running* (its lease is held), *queued* (resolvable, or
waiting for its teachers or scores: such runs have no run id yet), *skipped* (it cannot train:
the resolver's reason) or *failed* (``harness.failures`` records, with the log file).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import ExperimentConfig, seed_list
from harness.experiment import open_store, trajectory_specs
from harness.failures import read_failures, run_key, run_label
from harness.leases import lease_path
from harness.objects import ObjectPath
from harness.report.console import cut
from harness.runs import ResolvedRun, Run, RunResolver
from harness.store import LOCK, StoreError
from harness.teacher_choices import choice_of

WIDTH = 120


@dataclass
class SweepState:
    """The grid's runs by state (``sweep_state``); ``waiting``: (run, what it waits for)."""

    done: list[ResolvedRun] = field(default_factory=list)
    todo: list[ResolvedRun] = field(default_factory=list)
    waiting: list[tuple[Run, str]] = field(default_factory=list)
    skipped: list[tuple[Run, str]] = field(default_factory=list)


def sweep_state(cfg: ExperimentConfig, runs: list[Run]) -> SweepState:
    """Each run resolved where its teachers are finished (and scored, when its choice needs
    scores): done when the results hold its row, else to train, or skipped with the reason
    ``RunResolver.resolve_or_reason`` gives (the sweep skips the same runs before launch)."""
    from harness.scoring.freshness import scores_fresh

    resolver = RunResolver(cfg)
    store, done_ids = resolver.store, resolver.store.results.done_ids()
    finished: dict[str, bool] = {}
    fresh: dict[str, bool] = {}
    state = SweepState()
    dataset, teacher_seeds = cfg.data.name, seed_list(cfg.teacher)  # read once, not per run
    for run in runs:
        choice = choice_of(run.teacher_choice)
        names = choice.trajectories(run.teacher_arch, dataset, run.teacher_seed, teacher_seeds)
        names = () if choice.is_none else names
        for n in names:
            if n not in finished:
                finished[n] = _finished(store, n)
        if not all(finished[n] for n in names):
            state.waiting.append((run, "teachers"))
            continue
        if choice.needs_scores and not all(fresh.setdefault(n, scores_fresh(cfg, n)) for n in names):
            state.waiting.append((run, "scores"))
            continue
        resolved = resolver.resolve_or_reason(run)
        if isinstance(resolved, str):
            state.skipped.append((run, resolved))
        else:
            (state.done if resolved.run_id in done_ids else state.todo).append(resolved)
    return state


def _finished(store, name: str) -> bool:
    try:
        return store.trajectory(name).is_finished()
    except StoreError:  # an unreadable manifest: not a teacher (``ckd teachers`` says why)
        return False


def _kernel_flocks() -> set[int] | None:
    """Inodes of the files some process holds a ``flock`` on (``/proc/locks``); None if unreadable."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    inodes = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == "FLOCK" and parts[0] != "->":
            with contextlib.suppress(ValueError, IndexError):
                inodes.add(int(parts[5].split(":")[2]))
    return inodes


def lock_holder(path: Path | ObjectPath, flocks: set[int] | None) -> str | None:
    """Who holds the ``flock`` on ``path`` ("pid N on host"), or None when nobody does (on an
    object store: the lease object's live holder)."""
    if isinstance(path, ObjectPath):
        from harness.object_leases import lease_holder

        return lease_holder(path)
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if flocks is not None:
        held = st.st_ino in flocks
    else:  # no kernel list here: try a shared lock, let go at once
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            held = False
        except OSError as e:
            held = e.errno in (errno.EAGAIN, errno.EACCES)
        finally:
            os.close(fd)
    if not held:
        return None
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[:200].strip() or "another process"
    return "another process"


@dataclass(frozen=True)
class Rates:
    """Measured seconds: per teacher epoch, per student-epoch, per trajectory scored (None: none yet)."""

    teacher_epoch_s: float | None
    student_epoch_s: float | None
    score_s: float | None

    def estimate(self, teacher_epochs: int, student_epochs: int, to_score: int) -> str:
        """``about 1h 05m of work, one worker (...)``, naming the stages with work but no measured
        rate; ``no measured rates yet`` when none has one; serial seconds per stage."""
        parts, unknown, total = [], [], 0.0
        for what, n, rate in (
            ("teachers", teacher_epochs, self.teacher_epoch_s),
            ("scoring", to_score, self.score_s),
            ("students", student_epochs, self.student_epoch_s),
        ):
            if n and rate is None:
                unknown.append(what)
            elif n:
                parts.append(f"{what} {duration(n * rate)}")
                total += n * rate
        if not parts:
            return "no measured rates yet" if unknown else "nothing left to do"
        rest = f"; no measured rate yet for {', '.join(unknown)}" if unknown else ""
        return f"about {duration(total)} of work, one worker ({', '.join(parts)}){rest}"


def duration(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``2h 10m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def measured_rates(cfg: ExperimentConfig) -> Rates:
    """Rates from the store: the median seconds of the teachers' epochs (manifest histories), of a
    student-epoch (result rows' wall time / epochs / pack size) and of scoring one trajectory
    (scores files' ``cost_s``)."""
    from harness.scoring.scores_file import estimates_cost_s, read_scores

    store = open_store(cfg)
    teacher, scoring = [], []
    for spec in trajectory_specs(cfg):
        traj = store.trajectory(spec.name)
        with contextlib.suppress(StoreError, ValueError, TypeError):
            teacher += [float(h["seconds"]) for h in traj.manifest().get("history", []) if "seconds" in h]
        with contextlib.suppress(Exception):  # no or an unreadable scores file: no rate from it
            cost = estimates_cost_s(read_scores(store, spec.name), list(cfg.scoring.estimators))
            if cost is not None:
                scoring.append(cost)
    students = []
    for r in store.read_results():
        with contextlib.suppress(KeyError, TypeError, ValueError, ZeroDivisionError):
            students.append(float(r["wall_time_s"]) / int(r["epochs"]) / max(int(r.get("pack_size") or 1), 1))

    def median(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    return Rates(median(teacher), median(students), median(scoring))


def _teacher_lines(cfg: ExperimentConfig, flocks: set[int] | None) -> tuple[list[str], dict[str, int], int]:
    """One line per trajectory (finished / running / resumable / queued), the counts, epochs left."""
    store, counts, left = open_store(cfg), dict.fromkeys(("finished", "running", "queued"), 0), 0
    lines = []
    for spec in trajectory_specs(cfg):
        traj = store.trajectory(spec.name)
        try:
            finished, saved = traj.is_finished(), traj.checkpoints()
            history = len((traj.manifest_or_none() or {}).get("history", []))
        except StoreError as e:
            lines.append(f"  {spec.name:<40} unreadable: {str(e).splitlines()[0]}"[:WIDTH])
            continue
        done = max(history, saved[-1]["epoch"] if saved else 0)
        holder = lock_holder(traj.dir / LOCK, flocks)
        if finished:
            state, key = "finished", "finished"
        elif holder:
            state, key = f"running: epoch {done}/{cfg.teacher.epochs} ({holder})", "running"
        elif traj.resume_path.is_file() or traj.exists():
            state, key = f"queued: resumes after epoch {done}/{cfg.teacher.epochs}", "queued"
        else:
            state, key = "queued", "queued"
        counts[key] += 1
        left += 0 if finished else cfg.teacher.epochs - done
        lines.append(f"  {spec.name:<40} {state}"[:WIDTH])
    return lines, counts, left


def describe_status(cfg: ExperimentConfig) -> str:
    """The status text of ``cfg``'s experiment (module doc); StoreError when there is none."""
    from harness.scoring.freshness import scores_fresh
    from harness.scoring.scores_file import read_scores
    from harness.sweep import sweep_runs

    store = open_store(cfg)
    if not store.root.is_dir():
        raise StoreError(f"no experiment at {store.root}; run `ckd run CONFIG` first")
    flocks = _kernel_flocks()
    t_lines, t_counts, t_left = _teacher_lines(cfg, flocks)
    names = [s.name for s in trajectory_specs(cfg)]
    fresh = [n for n in names if scores_fresh(cfg, n)]
    stale = [n for n in names if n not in fresh and _has_scores(read_scores, store, n)]
    runs = sweep_runs(cfg)
    state = sweep_state(cfg, runs)
    running = {r.run_id: h for r in state.todo if (h := lock_holder(lease_path(store.root, r.run_id), flocks))}
    failed = [f for f in read_failures(store.root, [r.to_dict() for r in runs]) if f["status"] == "failed"]
    failed_keys = {f["key"] for f in failed}
    queued = len(state.waiting) + sum(
        r.run_id not in running and run_key(r.run.to_dict()) not in failed_keys for r in state.todo
    )
    student_epochs = (queued + len(running)) * cfg.student.epochs
    rates = measured_rates(cfg)
    out = [
        f"status of experiment {cfg.name!r} in {store.root} (read from the store; nothing was run)",
        f"[teachers] {len(names)} trajectories: {t_counts['finished']} finished, {t_counts['running']} running, "
        f"{t_counts['queued']} queued; {t_left} teacher-epochs left",
        *t_lines,
        f"[score]    {len(fresh)} fresh, {len(stale)} stale, {len(names) - len(fresh) - len(stale)} missing",
        f"[sweep]    {len(runs)} runs: {len(state.done)} done, {len(running)} running, {queued} queued"
        f"{_waiting_note(state)}, {len(state.skipped)} skipped, {len(failed)} failed",
        *[cut(f"  running  {_label(r.run)} ({h})", WIDTH) for r in state.todo if (h := running.get(r.run_id))],
        *[cut(f"  skipped  {run_label(run.to_dict())}: {why}", WIDTH) for run, why in state.skipped],
        *[_failed_line(f) for f in failed],
        f"left: {rates.estimate(t_left, student_epochs, len(names) - len(fresh))}",
        f"next: {_next(cfg, t_counts, len(fresh) < len(names), queued, running, state, failed)}",
    ]
    return "\n".join(out)


def _failed_line(entry: dict) -> str:
    """``  failed   <label>: <reason> (log: failures/<key>.log)``, the reason cut to fit."""
    log = f" (log: {entry.get('log') or 'none'})"
    return cut(f"  failed   {entry['label']}: {entry['reason']}", WIDTH - len(log)) + log


def _has_scores(read_scores, store, name: str) -> bool:
    try:
        read_scores(store, name)
        return True
    except Exception:  # missing or unreadable: not "stale", missing
        return False


def _label(run: Run) -> str:
    t = "" if choice_of(run.teacher_choice).is_none else f" <- {run.teacher_arch} s{run.teacher_seed}"
    return f"{run.teacher_choice}/{run.student_arch}/s{run.seed} T={run.temperature:g} w={run.kd_weight:g}{t}"


def _waiting_note(state: SweepState) -> str:
    what = {w for _, w in state.waiting}
    return f" ({len(state.waiting)} wait for {' and '.join(sorted(what))})" if state.waiting else ""


def _next(cfg, t_counts: dict, scores_left: bool, queued: int, running: dict, state: SweepState, failed) -> str:
    """What to do next, in one line."""
    if t_counts["running"] or running:
        return "a run is in progress; `ckd status` again to follow it (or wait for it to finish)"
    if t_counts["queued"]:
        return "`ckd teachers CONFIG` (or `ckd run CONFIG`) trains the queued trajectories"
    if scores_left:
        return "`ckd score CONFIG` (or `ckd run CONFIG`) scores the trajectories"
    if queued > 0:
        return "`ckd sweep CONFIG` (or `ckd run CONFIG`) trains the queued runs"
    if failed:
        return "read the failed runs' logs, fix, then `ckd sweep CONFIG` retries them"
    return "everything has run; `ckd leaderboard CONFIG` prints the report"
