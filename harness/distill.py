"""Distill students from teacher choices and record one result row per student.

Students that share architecture and recipe (``cfg.student``: epochs, batch size, optimizer
schedule) train as one *pack* (``harness/packing.py``), whatever their seed (init and data
order), teacher choice, temperature or kd_weight; ``distill_student`` is a pack of one, the same
code path. Teacher checkpoints are resolved from the store (sha256-checked). When the training
split has no augmentation, each checkpoint's logits come from the shared cache
(``harness/teacher_logits.py``: computed once per checkpoint for every trial) and each member's
soft targets are precomputed from them; with augmentation the teachers run per batch, one
vmapped pass per ensemble (``FrozenTeacher``) serving every member that sees the same batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.config import ExperimentConfig, config_hash, to_dict
from harness.data import DataSplits, make_loader
from harness.experiment import load_splits, open_store, set_threads
from harness.packing import PackedModel, new_students, predict_packed, train_packed_epoch
from harness.store import StoreError, trajectory_name
from harness.student_batches import PackBatches
from harness.teacher_choices import ResolveContext, TeacherRef, parse_teacher_choice, resolve_teacher_choice
from harness.teacher_logits import LogitCache
from harness.training import epoch_seed, metrics_from_logits, resolve_device

logger = logging.getLogger(__name__)
OnEpoch = Callable[[dict, dict], None]


NOT_IN_RUN_ID = ("device_data",)  # how data reach the device, not what a run is (keeps stored run ids valid)
RUN_ID_KEYS = (
    "teacher_choice",
    "student_arch",
    "seed",
    "temperature",
    "kd_weight",
    "ensemble_reduce",
    "teacher_checkpoints",
)


class RunResolver:
    """Resolves runs of one config against the store, cheaply enough for a 10^5-run grid: the
    store and the config's static parts are built once, and each (teacher trajectory, choice)
    is resolved once (manifests and scores files are read once per trajectory, not per run)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg, self.store = cfg, open_store(cfg)
        self.static = {  # the part of every run id that does not depend on the run
            "experiment": cfg.name,
            "data": {k: v for k, v in to_dict(cfg.data).items() if k not in NOT_IN_RUN_ID},
            "student": to_dict(cfg.student),
            "teachers": {k: v for k, v in to_dict(cfg.teacher).items() if k != "seeds"},
        }
        self.dataset, self.teacher_seeds = cfg.data.name, [int(s) for s in cfg.teacher.seeds]
        self.default_arch, self.default_student = cfg.teacher.archs[0], cfg.student.archs[0]
        self._refs: dict[tuple[str, int, str], list[TeacherRef]] = {}

    def refs(self, teacher_arch: str, teacher_seed: int, choice: str) -> list[TeacherRef]:
        key = (teacher_arch, teacher_seed, choice)
        if key not in self._refs:
            seeds = [teacher_seed] + [s for s in self.teacher_seeds if s != teacher_seed]
            ctx = ResolveContext(
                store=self.store,
                trajectory=trajectory_name(teacher_arch, self.dataset, teacher_seed),
                siblings=[trajectory_name(teacher_arch, self.dataset, s) for s in seeds],
                epochs=self.cfg.teacher.epochs,
            )
            self._refs[key] = resolve_teacher_choice(parse_teacher_choice(choice), ctx)
        return self._refs[key]

    def resolve(self, d: Any) -> dict:
        """The run described by a ``distill`` section (or a dict with its keys), resolved."""
        teacher_arch = d.get("teacher_arch") or self.default_arch
        teacher_seed = self.teacher_seeds[0] if d.get("teacher_seed") is None else int(d.get("teacher_seed"))
        refs = self.refs(teacher_arch, teacher_seed, str(d["teacher_choice"]))
        return {
            "teacher_choice": str(d["teacher_choice"]),
            "teacher_arch": teacher_arch if refs else None,
            "teacher_seed": teacher_seed if refs else None,
            "teacher_checkpoints": [{"trajectory": r.trajectory, "epoch": r.epoch} for r in refs],
            "student_arch": d.get("student_arch") or self.default_student,
            "seed": d["seed"],
            "temperature": d["temperature"],
            "kd_weight": d["kd_weight"] if refs else 0.0,
            "ensemble_reduce": d["ensemble_reduce"],
        }

    def run_id(self, run: dict) -> str:
        """Stable id of a run: same data, student recipe, teacher choice, checkpoints and KD settings.

        The choice is part of the id although e.g. ``fraction:0.5`` and ``epoch:40`` may resolve
        to the same checkpoint: each choice gets its own leaderboard row.
        """
        return config_hash({**self.static, "run": {k: run[k] for k in RUN_ID_KEYS}})


@dataclass
class Member:
    """One student of a pack: its run, teacher checkpoints and metrics history."""

    run: dict
    run_id: str
    refs: tuple[TeacherRef, ...]
    teacher_metrics: dict[str, float]
    history: list[dict] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"{self.run['student_arch']}<-{self.run['teacher_choice']} s{self.run['seed']}"


@dataclass
class StudentPack:
    """A pack's training state: what the epoch loop reads and updates."""

    cfg: ExperimentConfig
    device: torch.device
    splits: DataSplits
    members: list[Member]
    model: PackedModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    batches: PackBatches

    @property
    def tag(self) -> str:
        return (
            self.members[0].tag
            if len(self.members) == 1
            else f"pack of {len(self.members)} {self.members[0].run['student_arch']}"
        )

    def state(self) -> dict:
        """What a resumed pack continues from (Tune trials save it every few epochs)."""
        return {
            "pack": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "histories": [m.history for m in self.members],
            "run_ids": [m.run_id for m in self.members],
        }


def distill_student(
    cfg: ExperimentConfig, on_epoch: OnEpoch | None = None, resume: dict | None = None, row_fields: dict | None = None
) -> dict:
    """Train one student per ``cfg.distill`` (a pack of one); record and return its result row."""
    return distill_pack(cfg, [cfg.distill], on_epoch, resume, row_fields)[0]


def distill_pack(
    cfg: ExperimentConfig,
    runs: list[Any],
    on_epoch: OnEpoch | None = None,
    resume: dict | None = None,
    row_fields: dict | None = None,
) -> list[dict]:
    """Train the students of ``runs`` (``distill`` sections or dicts with their keys) as one pack;
    record and return their result rows, in the order of ``runs``.

    ``on_epoch(metrics, state)`` is called after every epoch with the members' mean metrics and a
    resumable ``state``; passing such a state back as ``resume`` continues from it. Runs whose id
    has a row already are not trained again (an O(1) lookup). ``row_fields`` are added to every
    row (e.g. the Tune trial's identity).
    """
    began = time.perf_counter()
    resolver = RunResolver(cfg)
    resolved = [resolver.resolve(r) for r in runs]
    ids = [resolver.run_id(r) for r in resolved]
    rows = {rid: resolver.store.results.find(rid) for rid in dict.fromkeys(ids)}
    todo = {rid: run for run, rid in zip(resolved, ids) if rows[rid] is None}  # (a run given twice trains once)
    for rid in (r for r, row in rows.items() if row is not None):
        logger.info(f"[distill] run {rid} has a result already; skipping")
    if todo:
        pack = _build_pack(cfg, todo)
        if resume is not None:
            _resume(pack, resume)
        for epoch in range(len(pack.members[0].history) + 1, cfg.student.epochs + 1):
            metrics = _pack_epoch(pack, epoch)
            if on_epoch is not None:
                on_epoch(metrics, pack.state())
        rows.update(_record(pack, time.perf_counter() - began, row_fields or {}, resolver.store))
    return [rows[rid] for rid in ids]


def _record(pack: StudentPack, wall_time_s: float, fields: dict, store) -> dict[str, dict]:
    out = {}
    for m in pack.members:
        row = {**_result_row(pack, m, wall_time_s), **fields}
        store.append_result(row)
        logger.info(
            f"[{m.tag}] final test acc {row['final_test_acc']:.2%} (val {row['final_val_acc']:.2%}); "
            f"row {m.run_id} recorded in {store.results.rows_dir}"
        )
        out[m.run_id] = row
    return out


def _build_pack(cfg: ExperimentConfig, todo: dict[str, dict]) -> StudentPack:
    """Data, teachers (+ their metrics, from the logit cache), members' models and one optimizer."""
    set_threads(cfg)
    device = resolve_device(cfg.device)
    archs = {run["student_arch"] for run in todo.values()}
    if len(archs) > 1:
        raise ValueError(f"a pack holds students of one architecture; got {sorted(archs)}")
    splits = load_splits(cfg, device)
    cache = LogitCache(cfg, open_store(cfg), splits, device)
    members, metrics = [], {(): {}}  # teacher metrics once per distinct teacher
    for rid, run in todo.items():
        refs = tuple(TeacherRef(c["trajectory"], c["epoch"]) for c in run["teacher_checkpoints"])
        if refs not in metrics:
            metrics[refs] = cache.teacher_metrics(list(refs), cfg.distill.ensemble_reduce)
        members.append(Member(run, rid, refs, metrics[refs]))
    model, optimizer, scheduler = new_students(
        archs.pop(), [m.run["seed"] for m in members], splits, cfg.student.optim, cfg.student.epochs, device
    )
    batches = PackBatches(cfg, splits, members, cache, device)
    return StudentPack(cfg, device, splits, members, model, optimizer, scheduler, batches)


def _resume(pack: StudentPack, state: dict) -> None:
    """Continue from a saved state, which must belong to these very runs (same run ids)."""
    ids = [m.run_id for m in pack.members]
    if state.get("run_ids") != ids and set(ids) < set(state.get("run_ids") or []):
        logger.warning(
            f"[distill] the saved state is of a pack of {len(state['run_ids'])} of which only {len(ids)} "
            "still lack a result row (the others were recorded before an interruption); these start over"
        )
        return
    if state.get("run_ids") != ids:
        saved = ", ".join(repr(r) for r in state.get("run_ids") or [state.get("run_id")])
        raise StoreError(
            f"the saved student state belongs to run {saved}, not to {', '.join(map(repr, ids))} "
            "(another config or pack); it was not used. Re-run with --restart to start over"
        )
    pack.model.load_state_dict(state["pack"])
    pack.optimizer.load_state_dict(state["optimizer"])
    pack.scheduler.load_state_dict(state["scheduler"])
    for m, history in zip(pack.members, state["histories"]):
        m.history = list(history)
    logger.info(f"[distill] resuming {pack.tag} after epoch {len(pack.members[0].history)}")


def _pack_epoch(pack: StudentPack, epoch: int) -> dict:
    """Train one epoch, evaluate every member on val and test, log; the members' mean metrics."""
    cfg, members = pack.cfg, pack.members
    t0 = time.perf_counter()
    torch.manual_seed(epoch_seed(members[0].run["seed"], epoch))
    res = train_packed_epoch(
        pack.model,
        pack.batches.epoch(epoch),
        pack.optimizer,
        pack.batches.loss,
        progress=f"[{pack.tag}] epoch {epoch}",
        precision=cfg.precision,
    )
    pack.scheduler.step()
    per_member = [
        {"epoch": epoch, "train_loss": float(res.loss[i]), "train_acc": float(res.acc[i])} for i in range(len(members))
    ]
    for name in ("val", "test"):
        loader = make_loader(getattr(pack.splits, name), cfg.data.eval_batch_size, shuffle=False, device=pack.device)
        logits, y = predict_packed(pack.model, loader, pack.device, precision=cfg.precision)
        for i, m in enumerate(per_member):
            m.update(metrics_from_logits(logits[i], y, name))
    seconds = time.perf_counter() - t0
    for m, metrics in zip(members, per_member):
        metrics["seconds"] = seconds
        m.history.append(metrics)
    mean = {k: sum(m[k] for m in per_member) / len(per_member) for k in per_member[0]}
    logger.info(
        f"[{pack.tag}] epoch {epoch:3d}/{cfg.student.epochs} loss {mean['train_loss']:.4f} acc {mean['train_acc']:6.2%} "
        f"val {mean['val_acc']:6.2%} test {mean['test_acc']:6.2%} {seconds:5.2f}s"
        + ("" if len(members) == 1 else " (means over the pack)")
    )
    return {**mean, "epoch": epoch, "members": len(members)}


def _result_row(pack: StudentPack, member: Member, wall_time_s: float) -> dict:
    """The results-file row of one member: its run, teacher metrics, final and best-on-val accuracies."""
    history = member.history
    best = max(history, key=lambda m: (m["val_acc"], -m["epoch"]))
    return {
        "run_id": member.run_id,
        "experiment": pack.cfg.name,
        "dataset": pack.cfg.data.name,
        **member.run,
        "epochs": pack.cfg.student.epochs,
        **member.teacher_metrics,
        "final_val_acc": history[-1]["val_acc"],
        "final_test_acc": history[-1]["test_acc"],
        "best_val_acc": best["val_acc"],
        "best_val_epoch": best["epoch"],
        "test_acc_at_best_val": best["test_acc"],
        "val_acc_per_epoch": [m["val_acc"] for m in history],
        "test_acc_per_epoch": [m["test_acc"] for m in history],
        "wall_time_s": wall_time_s,
        "pack_size": len(pack.members),
        "device": str(pack.device),
    }
