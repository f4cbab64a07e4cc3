"""Teacher trajectories in Ray actors (the Ray side of ``harness/teachers.py``).

One actor per teacher pack (``teachers.teacher_packs``: seeds of one arch trained as one
vectorized model; a lone trajectory is a pack of one), each with ``cluster.trajectory`` resources (torch
threads = its CPUs; the device is the one Ray assigned, so ``device=auto`` picks its GPU), spread
over the nodes. All actors are submitted at once and Ray runs as many as resources allow. An
actor calls the core ``train_pack``, which writes every member's checkpoints + ``resume.pt`` into
the store after every epoch. When an actor dies (killed, OOM, node lost) Ray restarts it, up to
``cluster.max_actor_restarts`` times, and retries its ``train`` call, which resumes after the
last finished epoch. A trajectory that is already finished is never sent to an actor (a pack
is sent with its unfinished members; its manifests still record the config's pack).

Actors report each member's epoch to a small ``ProgressBoard`` actor; the driver shows every trajectory
(epoch, val acc, s/epoch, node, restarts) with ``harness.progress``: live bars on a terminal,
otherwise one ``[teachers]`` line for the stage every ``cluster.progress_interval_s``. Per-epoch log lines go to
``<storage>/<name>/logs/<trajectory>.log``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cluster.connection import ClusterSession, config_from_dict
from harness.cluster.errors import ClusterError, get_result
from harness.config import ExperimentConfig, to_dict
from harness.experiment import TrajectorySpec, open_store, stage_threads
from harness.logs import file_log
from harness.progress import Progress, StageLine, publish, slot_eta
from harness.teachers import TeacherPackSpec, teacher_packs, train_pack, train_trajectory

logger = logging.getLogger(__name__)


def logs_dir(cfg: ExperimentConfig) -> Path:
    return open_store(cfg).root / "logs"


def pack_log(names: tuple[str, ...] | list[str]) -> str:
    """A pack actor's log file name: its trajectory's (a pack of one) or its first member's + size."""
    return f"{names[0]}.log" if len(names) == 1 else f"{names[0]}-pack{len(names)}.log"


class ProgressBoard:
    """Tiny actor: the latest state of every trajectory, written by actors, read by the driver."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.version = 0

    def update(self, name: str, **fields: Any) -> None:
        row = self.rows.setdefault(name, {"attempts": []})
        if fields.get("status") == "pending" and row.get("status") in ("running", "finished"):
            del fields["status"]  # the driver's "pending" may arrive after the actor's "running"
        attempt = fields.pop("attempt", None)
        if attempt is not None:
            row["attempts"].append(attempt)
        row.update(fields)
        self.version += 1

    def snapshot(self) -> tuple[int, dict[str, dict]]:
        return self.version, self.rows


class TrajectoryActor:
    """Trains one pack of trajectories with the core code; a restarted actor resumes every
    member from its ``resume.pt``."""

    def __init__(self, cfg: dict, board: str) -> None:
        import ray
        import torch

        self.cfg = config_from_dict(cfg)
        self.cfg.threads = stage_threads(self.cfg, "trajectory")
        torch.set_num_threads(self.cfg.threads)
        self.board = ray.get_actor(board)  # by name: a handle argument would make restarts fragile
        self.node_id = ray.get_runtime_context().get_node_id()

    def train(self, arch: str, seeds: list[int]) -> dict[str, dict]:
        """Train the pack (``seeds``: the config's whole pack); name -> manifest of its members."""
        from harness.training import resolve_device

        names = [TrajectorySpec(arch, s, self.cfg.data.name).name for s in seeds]
        with file_log(logs_dir(self.cfg) / pack_log(names)):
            device = str(resolve_device(self.cfg.device))
            logger.info(
                f"[{', '.join(names)}] actor pid {os.getpid()} on node {self.node_id[:12]}, device {device}, "
                f"{self.cfg.threads} torch thread(s)"
            )
            store = open_store(self.cfg)
            for name in names:
                if not store.trajectory(name).is_finished():  # (finished members are skipped by train_pack)
                    self.board.update.remote(
                        name, status="running", node=self.node_id[:8], device=device, started_at=time.time()
                    )
            manifests = train_pack(self.cfg, arch, seeds, on_epoch=self._reporter())
        for name, manifest in zip(names, manifests, strict=True):
            final = manifest["checkpoints"][-1] if manifest.get("checkpoints") else {}
            self.board.update.remote(
                name,
                status="finished",
                epoch=manifest.get("epochs"),
                test_acc=final.get("test_acc"),
                val_acc=final.get("val_acc"),
            )
        return dict(zip(names, manifests, strict=True))

    def _reporter(self) -> Callable[[str, int, dict], None]:
        """An ``on_epoch`` hook that tells the board a member's epoch, val acc and s/epoch of this attempt."""
        started, first = time.time(), {}

        def on_epoch(name: str, epoch: int, metrics: dict) -> None:
            if name not in first:
                first[name] = epoch
                self.board.update.remote(
                    name, attempt={"node": self.node_id[:8], "first_epoch": epoch, "pid": os.getpid()}
                )
            done = epoch - first[name] + 1
            self.board.update.remote(
                name, epoch=epoch, val_acc=metrics.get("val_acc"), s_per_epoch=(time.time() - started) / done
            )

        return on_epoch


def _pct(x: Any) -> str:
    return f"{100 * x:6.2f}%" if isinstance(x, (int, float)) else "      -"


class TrajectoryRunner:
    """Driver side: submit one actor per pack with an unfinished member, watch them, show progress
    (one row per member trajectory).

    ``on_finished(name, manifest)`` runs on the driver for every finished trajectory (also the
    ones finished before), e.g. to hand it to the scorer; ``on_tick()`` runs every poll.
    """

    def __init__(
        self,
        session: ClusterSession,
        on_finished: Callable[[str, dict], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        poll_s: float = 0.5,
    ) -> None:
        self.session, self.cfg = session, session.cfg
        self.on_finished, self.on_tick, self.poll_s = on_finished, on_tick, poll_s
        self.actors: dict[str, Any] = {}  # member name -> its pack's actor handle (while it runs)
        self.refs: dict[Any, tuple[str, ...]] = {}  # train() object ref -> its pack's unfinished members
        self.pack_logs: dict[tuple[str, ...], str] = {}  # those members -> their actor's log file name
        self.specs: dict[str, TrajectorySpec] = {}
        self.manifests: dict[str, dict] = {}
        self.failures: dict[str, BaseException] = {}
        self.board = None
        self.view: TrajectoryTable | None = None

    # ----------------------------------------------------------------- submit
    def start(self, specs: list[TrajectorySpec] | None = None) -> TrajectoryRunner:
        """Submit the config's packs (``specs``: only the packs' members among them)."""
        wanted = None if specs is None else {s.name for s in specs}
        store = open_store(self.cfg)
        todo, done = [], {}
        for pack in teacher_packs(self.cfg):
            members = [s for s in pack.specs(self.cfg.data.name) if wanted is None or s.name in wanted]
            for spec in members:
                self.specs[spec.name] = spec
                if store.trajectory(spec.name).is_finished():
                    # the core call checks the config hash and returns the manifest without training
                    done[spec.name] = train_trajectory(self.cfg, spec.arch, spec.seed)
            left = tuple(s.name for s in members if s.name not in done)
            if left:  # the pack as the config cuts it (its manifests record it); its finished members are skipped
                todo.append((TeacherPackSpec(pack.arch, tuple(s.seed for s in members)), left))
        if todo:
            self._submit(todo)
        for name, manifest in done.items():  # after submitting, so that training gets slots first
            self._finished(name, manifest)
        return self

    def _submit(self, todo: list[tuple[TeacherPackSpec, tuple[str, ...]]]) -> None:
        """One actor per pack; ``todo``: (pack, its unfinished members, the ones watched here)."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        res = self.session.resources("trajectory")  # joins/starts the cluster now
        here = ray.get_runtime_context().get_node_id()
        board_name = f"ckd-progress-{uuid.uuid4().hex[:12]}"
        self.board = (
            ray.remote(ProgressBoard)
            .options(name=board_name, num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
            .remote()
        )
        actor_cls = ray.remote(TrajectoryActor)
        restarts = self.cfg.cluster.max_actor_restarts
        logger.info(
            f"[teachers] {len(todo)} pack(s) to train in Ray actors ({res['num_cpus']:g} CPU, "
            f"{res['num_gpus']:g} GPU each, up to {restarts} restarts); logs in {logs_dir(self.cfg)}"
        )
        self.view = TrajectoryTable(list(self.specs), self.cfg.teacher.epochs, self.cfg.cluster.progress_interval_s)
        for pack, names in todo:
            for name in names:
                self.board.update.remote(name, status="pending", epochs=self.cfg.teacher.epochs)
            actor = actor_cls.options(
                **res,
                max_restarts=restarts,
                max_task_retries=-1,
                scheduling_strategy="SPREAD",
            ).remote(to_dict(self.cfg), board_name)
            self.refs[actor.train.remote(pack.arch, list(pack.seeds))] = names
            self.pack_logs[names] = pack_log([s.name for s in pack.specs(self.cfg.data.name)])
            self.actors.update(dict.fromkeys(names, actor))

    def _finished(self, name: str, manifest: dict) -> None:
        self.manifests[name] = manifest
        if self.on_finished is not None:
            self.on_finished(name, manifest)

    # ----------------------------------------------------------------- watch
    def wait(self) -> dict[str, dict]:
        """Block until every trajectory finished or failed; raise if any failed."""
        try:
            if self.refs:
                self._watch()
        finally:
            if self.view is not None:
                self.view.close()
        if self.failures:
            first = next(iter(self.failures.values()))
            if len(self.failures) == 1:
                raise first
            names = ", ".join(self.failures)
            raise ClusterError(f"{len(self.failures)} trajectories failed ({names}); the first: {first}") from first
        return self.manifests

    def _watch(self) -> None:
        import ray

        while self.refs:
            ready, _ = ray.wait(list(self.refs), num_returns=1, timeout=self.poll_s)
            for ref in ready:
                self._collect(ref)
                self._show(force=True)
            if self.on_tick is not None:
                self.on_tick()
            self._show()

    def _collect(self, ref) -> None:
        """One ``train`` call returned: keep its members' manifests, or the reason it failed."""
        import ray

        names = self.refs.pop(ref)
        actor = [self.actors.pop(n, None) for n in names][0]
        name = names[0] if len(names) == 1 else f"pack {', '.join(names)}"
        manifests, error = get_result(
            ref,
            lambda e: ClusterError(
                f"trajectory {name}: its Ray actor died and the cluster.max_actor_restarts="
                f"{self.cfg.cluster.max_actor_restarts} restarts are used up ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else e}). Its checkpoints are kept: fix the cause "
                "(memory: more cluster.trajectory.cpus/gpus; lost nodes: a stabler cluster) or raise "
                f"cluster.max_actor_restarts, then re-run to resume. Log: {logs_dir(self.cfg) / self.pack_logs[names]}"
            ),
        )
        if error is not None:
            for member in names:
                self.failures[member] = error
            logger.warning(f"[teachers] {name}: FAILED ({type(error).__name__}: {str(error).splitlines()[0]})")
        else:
            for member in names:
                manifest = manifests[member]
                acc = _pct(manifest["checkpoints"][-1].get("test_acc")).strip()
                logger.info(f"[teachers] {member}: finished, test acc {acc}")
                self._finished(member, manifest)
        if actor is not None:
            ray.kill(actor)  # frees its resources for the next trajectory / the scorer

    def run(self, specs: list[TrajectorySpec] | None = None) -> dict[str, dict]:
        return self.start(specs).wait()

    def progress(self) -> dict[str, dict]:
        """The board's rows (name -> epoch, status, attempts, ...); empty if nothing ran."""
        if self.board is None:
            return {}
        import ray

        return ray.get(self.board.snapshot.remote())[1]

    def all_started(self) -> bool:
        """Has every trajectory got its actor running (or finished)? No slot is still awaited."""
        if self.board is None or not self.refs:
            return True
        rows = self.progress()
        return all(
            n in self.manifests or n in self.failures or rows.get(n, {}).get("status") in ("running", "finished")
            for n in self.specs
        )

    def _show(self, force: bool = False) -> None:
        if self.board is None or self.view is None:
            return
        import ray

        try:
            version, rows = ray.get(self.board.snapshot.remote(), timeout=10)
        except Exception:
            return
        self.view.update(version, rows, self.manifests, self.failures, force)


class TrajectoryTable:
    """Every trajectory's progress as one ``Progress`` each (live bars on a terminal) and, off a
    terminal, one ``[teachers]`` line per ``interval_s`` for the stage: finished / running /
    queued, epochs, and an ETA that runs queued trajectories after the running ones free their
    slots. The per-trajectory detail goes to the debug log (``-v``) and ``logs/<trajectory>.log``."""

    def __init__(self, names: list[str], epochs: int, interval_s: float, clock: Callable[[], float] | None = None):
        self.epochs, self.clock = epochs, clock or time.monotonic
        self.rows = {
            n: Progress(epochs, n, "epoch", log=logger, position=i, interval_s=float("inf"), clock=self.clock)
            for i, n in enumerate(names)
        }
        self.status = dict.fromkeys(names, "pending")
        self.stage = StageLine(logger, interval_s, self.clock)

    def update(self, version: int, board: dict, manifests: dict, failures: dict, force: bool = False) -> None:
        """Take the board's rows (``force``: kept for callers; lines stay one per interval)."""
        for name, progress in self.rows.items():
            r = board.get(name, {})
            status = "finished" if name in manifests else ("FAILED" if name in failures else r.get("status", "pending"))
            epoch = self.epochs if name in manifests else r.get("epoch", 0) or 0
            if self.status[name] == "pending" and status != "pending":
                # the queue is over: rate and ETA count from now, and from this run's epochs only
                first = (r.get("attempts") or [{}])[0].get("first_epoch")
                progress.set_n(epoch if status == "finished" else (first or 1) - 1)
                progress.start()
            self.status[name] = status
            restarts = max(0, len(r.get("attempts", [])) - 1)
            progress.set_postfix(
                f"val {_pct(r.get('val_acc')).strip()} node {r.get('node', '-')} restarts {restarts} {status}"
            )
            progress.set_n(epoch)
        eta = self.eta()
        done = all(s in ("finished", "FAILED") for s in self.status.values())
        publish("teachers", eta, done=done)
        if self.stage.offer(self.state(), eta, final=done):
            logger.debug("\n".join(["[teachers] trajectories:"] + [f"  {p.line()}" for p in self.rows.values()]))

    def state(self) -> str:
        counts = {k: sum(1 for s in self.status.values() if s == k) for k in ("finished", "running", "FAILED")}
        queued = len(self.status) - sum(counts.values())
        done_epochs = sum(min(p.n, self.epochs) for p in self.rows.values())
        failed = f", {counts['FAILED']} FAILED" if counts["FAILED"] else ""
        return (
            f"[teachers] {counts['finished']}/{len(self.rows)} finished, {counts['running']} running, "
            f"{queued} queued{failed}; {done_epochs}/{self.epochs * len(self.rows)} epochs"
        )

    def eta(self) -> float | None:
        """Seconds until every trajectory is done: running ones at their own measured s/epoch
        (the mean of the others before their first epoch), queued ones after a slot frees."""
        running = [p for n, p in self.rows.items() if self.status[n] == "running"]
        queued = [p for n, p in self.rows.items() if self.status[n] == "pending"]
        rates = [per for p in self.rows.values() if (per := p.per_unit()) is not None]
        if not running and not queued:
            return 0.0
        if not rates:
            return None  # no epoch finished anywhere yet: nothing to estimate from
        mean = sum(rates) / len(rates)
        left = []
        for p in running:
            eta = p.eta()
            left.append(eta if eta is not None else max(0.0, (p.total - p.n) * mean - (self.clock() - p.began)))
        return slot_eta(left, [(p.total - p.n) * mean for p in queued], slots=len(running))

    def close(self) -> None:
        self.stage.offer(self.state(), 0.0, final=True)
        for progress in self.rows.values():
            progress.close()
