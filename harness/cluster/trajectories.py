"""Teacher trajectories in Ray actors, with restarts and a driver-side progress table.

One actor per (arch x seed) trajectory, each with ``cluster.trajectory`` resources (torch
threads = its CPUs; the device is the one Ray assigned, so ``device=auto`` picks its GPU), spread
over the nodes. All actors are submitted at once and Ray runs as many as resources allow. An
actor calls the core ``train_trajectory``, which writes checkpoints + ``resume.pt`` into the
store after every epoch. When an actor dies (killed, OOM, node lost) Ray restarts it, up to
``cluster.max_actor_restarts`` times, and retries its ``train`` call, which resumes after the
last finished epoch. A trajectory that is already finished is never sent to an actor.

Actors report each epoch to a small ``ProgressBoard`` actor; the driver prints a table of all
trajectories (epoch, val acc, s/epoch, node, restarts) every ``cluster.progress_interval_s``.
Per-epoch log lines go to ``<storage>/<name>/logs/<trajectory>.log``.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Callable

from harness.cluster.connection import ClusterSession, Log, config_from_dict, torch_threads
from harness.cluster.errors import ClusterError
from harness.config import to_dict
from harness.experiment import TrajectorySpec, open_store, trajectory_specs


def file_logger(path: Path) -> Callable[[str], None]:
    """A ``log`` callable that appends lines to ``path`` (worker output stays off the driver)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        with open(path, "a") as f:
            f.write(msg.rstrip("\n") + "\n")

    return log


def logs_dir(cfg) -> Path:
    return open_store(cfg).root / "logs"


class ProgressBoard:
    """Tiny actor: the latest state of every trajectory, written by actors, read by the driver."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.version = 0

    def update(self, name: str, **fields: Any) -> None:
        row = self.rows.setdefault(name, {"attempts": []})
        attempt = fields.pop("attempt", None)
        if attempt is not None:
            row["attempts"].append(attempt)
        row.update(fields)
        self.version += 1

    def snapshot(self) -> tuple[int, dict[str, dict]]:
        return self.version, self.rows


class TrajectoryActor:
    """Trains one trajectory with the core code; a restarted actor resumes from ``resume.pt``."""

    def __init__(self, cfg: dict, board: str, cpus: float) -> None:
        import ray
        import torch

        self.cfg = config_from_dict(cfg)
        self.cfg.threads = torch_threads(cpus)
        torch.set_num_threads(self.cfg.threads)
        self.board = ray.get_actor(board)  # by name: a handle argument would make restarts fragile
        self.node_id = ray.get_runtime_context().get_node_id()

    def train(self, arch: str, seed: int) -> dict:
        import os

        from harness.teachers import train_trajectory
        from harness.training import resolve_device

        spec = TrajectorySpec(arch, seed, self.cfg.data.name)
        name = spec.name
        log = file_logger(logs_dir(self.cfg) / f"{name}.log")
        started = time.time()
        first: list[int] = []
        device = str(resolve_device(self.cfg.device))
        log(f"[{name}] actor pid {os.getpid()} on node {self.node_id[:12]}, device {device}, "
            f"{self.cfg.threads} torch thread(s)")
        self.board.update.remote(name, status="running", node=self.node_id[:8], device=device, started_at=started)

        def on_epoch(epoch: int, metrics: dict) -> None:
            if not first:
                first.append(epoch)
                self.board.update.remote(name, attempt={"node": self.node_id[:8], "first_epoch": epoch, "pid": os.getpid()})
            done = epoch - first[0] + 1
            self.board.update.remote(name, epoch=epoch, val_acc=metrics.get("val_acc"), s_per_epoch=(time.time() - started) / done)

        manifest = train_trajectory(self.cfg, arch, seed, log=log, on_epoch=on_epoch)
        final = manifest["checkpoints"][-1] if manifest.get("checkpoints") else {}
        self.board.update.remote(name, status="finished", epoch=manifest.get("epochs"), test_acc=final.get("test_acc"), val_acc=final.get("val_acc"))
        return manifest


def _unwrap(e: BaseException) -> BaseException:
    """The user-level exception inside a RayTaskError (StoreError, ConfigError, ...), else ``e``."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


def _pct(x: Any) -> str:
    return f"{100 * x:6.2f}%" if isinstance(x, (int, float)) else "      -"


class TrajectoryRunner:
    """Driver side: submit one actor per unfinished trajectory, watch them, print progress.

    ``on_finished(name, manifest)`` runs on the driver for every finished trajectory (also the
    ones finished before), e.g. to hand it to the scorer; ``on_tick()`` runs every poll.
    """

    def __init__(self, session: ClusterSession, log: Log | None = None,
                 on_finished: Callable[[str, dict], None] | None = None,
                 on_tick: Callable[[], None] | None = None, poll_s: float = 0.5) -> None:
        self.session, self.cfg, self.log = session, session.cfg, (session.log if log is None else log)
        self.on_finished, self.on_tick, self.poll_s = on_finished, on_tick, poll_s
        self.actors: dict[str, Any] = {}  # name -> actor handle (while it runs)
        self.refs: dict[Any, str] = {}  # train() object ref -> name
        self.specs: dict[str, TrajectorySpec] = {}
        self.manifests: dict[str, dict] = {}
        self.failures: dict[str, BaseException] = {}
        self.board = None
        self._last_table = 0.0
        self._last_version = -1
        self._began = time.time()

    # ----------------------------------------------------------------- submit
    def start(self, specs: list[TrajectorySpec] | None = None) -> "TrajectoryRunner":
        from harness.teachers import train_trajectory

        specs = trajectory_specs(self.cfg) if specs is None else specs
        store = open_store(self.cfg)
        todo, done = [], {}
        for spec in specs:
            self.specs[spec.name] = spec
            if store.trajectory(spec.name).is_finished():
                # the core call checks the config hash and returns the manifest without training
                done[spec.name] = train_trajectory(self.cfg, spec.arch, spec.seed, log=self.log)
            else:
                todo.append(spec)
        if todo:
            self._submit(todo)
        for name, manifest in done.items():  # after submitting, so that training gets slots first
            self._finished(name, manifest)
        return self

    def _submit(self, todo: list[TrajectorySpec]) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        res = self.session.resources("trajectory")  # joins/starts the cluster now
        here = ray.get_runtime_context().get_node_id()
        board_name = f"ckd-progress-{uuid.uuid4().hex[:12]}"
        self.board = ray.remote(ProgressBoard).options(
            name=board_name, num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
        ).remote()
        actor_cls = ray.remote(TrajectoryActor)
        restarts = int(self.cfg.cluster.max_actor_restarts)
        self.log(f"[teachers] {len(todo)} trajectories to train in Ray actors ({res['num_cpus']:g} CPU, "
                 f"{res['num_gpus']:g} GPU each, up to {restarts} restarts); logs in {logs_dir(self.cfg)}")
        for spec in todo:
            self.board.update.remote(spec.name, status="pending", epochs=int(self.cfg.teacher.epochs))
            actor = actor_cls.options(
                **res, max_restarts=restarts, max_task_retries=-1, scheduling_strategy="SPREAD",
            ).remote(to_dict(self.cfg), board_name, res["num_cpus"])
            ref = actor.train.remote(spec.arch, spec.seed)
            self.actors[spec.name] = actor
            self.refs[ref] = spec.name

    def _finished(self, name: str, manifest: dict) -> None:
        self.manifests[name] = manifest
        if self.on_finished is not None:
            self.on_finished(name, manifest)

    # ----------------------------------------------------------------- watch
    def wait(self) -> dict[str, dict]:
        """Block until every trajectory finished or failed; raise if any failed."""
        if self.refs:
            self._watch()
        if self.failures:
            first = next(iter(self.failures.values()))
            if len(self.failures) == 1:
                raise first
            names = ", ".join(self.failures)
            raise ClusterError(f"{len(self.failures)} trajectories failed ({names}); the first: {first}") from first
        return self.manifests

    def _watch(self) -> None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        interval = float(self.cfg.cluster.progress_interval_s)
        while self.refs:
            ready, _ = ray.wait(list(self.refs), num_returns=1, timeout=self.poll_s)
            for ref in ready:
                name = self.refs.pop(ref)
                actor = self.actors.pop(name, None)
                try:
                    manifest = ray.get(ref)
                except RayActorError as e:
                    self.failures[name] = ClusterError(
                        f"trajectory {name}: its Ray actor died and the cluster.max_actor_restarts="
                        f"{self.cfg.cluster.max_actor_restarts} restarts are used up ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else e}). Its checkpoints are kept: fix the cause "
                        "(memory: more cluster.trajectory.cpus/gpus; lost nodes: a stabler cluster) or raise "
                        f"cluster.max_actor_restarts, then re-run to resume. Log: {logs_dir(self.cfg) / (name + '.log')}"
                    )
                    self.log(f"[teachers] {name}: FAILED (actor died, restarts used up)")
                except RayTaskError as e:
                    self.failures[name] = _unwrap(e)
                    self.log(f"[teachers] {name}: FAILED ({type(_unwrap(e)).__name__}: {_unwrap(e)})")
                else:
                    self.log(f"[teachers] {name}: finished, test acc {_pct(manifest['checkpoints'][-1].get('test_acc')).strip()}")
                    self._finished(name, manifest)
                if actor is not None:
                    ray.kill(actor)  # frees its resources for the next trajectory / the scorer
                self._print_table(force=True)
            if self.on_tick is not None:
                self.on_tick()
            if time.time() - self._last_table >= interval:
                self._print_table()

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
        return all(n in self.manifests or n in self.failures or rows.get(n, {}).get("status") in ("running", "finished")
                   for n in self.specs)

    def _print_table(self, force: bool = False) -> None:
        if self.board is None:
            return
        import ray
        try:
            version, rows = ray.get(self.board.snapshot.remote(), timeout=10)
        except Exception:
            return
        if version == self._last_version and not force:
            return
        self._last_version, self._last_table = version, time.time()
        epochs = int(self.cfg.teacher.epochs)
        names = [n for n in self.specs if n in rows or n in self.manifests]
        lines = [f"[teachers] progress after {time.time() - self._began:.0f}s "
                 f"({sum(1 for n in names if n in self.manifests)}/{len(self.specs)} finished)",
                 f"  {'trajectory':<34} {'epoch':>9} {'val acc':>8} {'s/epoch':>8}  {'node':<8} {'restarts':>8}  status"]
        for n in names:
            r = rows.get(n, {})
            status = "finished" if n in self.manifests else ("FAILED" if n in self.failures else r.get("status", "pending"))
            epoch = epochs if n in self.manifests else r.get("epoch", 0)
            restarts = max(0, len(r.get("attempts", [])) - 1)
            spe = r.get("s_per_epoch")
            lines.append(f"  {n:<34} {f'{epoch}/{epochs}':>9} {_pct(r.get('val_acc')):>8} "
                         f"{(f'{spe:.2f}' if spe else '-'):>8}  {r.get('node', '-'):<8} {restarts:>8}  {status}")
        self.log("\n".join(lines))
