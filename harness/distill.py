"""Distill one student from a teacher choice and record the result row.

The teacher checkpoints are resolved from the store (sha256-checked), frozen, and used under
no_grad. When the training split has no augmentation, the teacher's soft targets are computed
once for the whole split instead of every epoch: identical targets, a fraction of the cost.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from harness.config import ExperimentConfig, config_hash, to_dict
from harness.data import DataSplits, TensorSplit, derive_seed, make_loader
from harness.experiment import load_splits, open_store, set_threads
from harness.kd import FrozenTeacher, kd_loss
from harness.models import create_model
from harness.store import StoreError, trajectory_name
from harness.teacher_choices import ResolveContext, TeacherRef, parse_teacher_choice, resolve_teacher_choice
from harness.training import (
    epoch_seed,
    make_optimizer,
    make_scheduler,
    metrics_from_logits,
    metrics_from_probs,
    predict_logits,
    resolve_device,
    seed_everything,
    train_epoch,
)

logger = logging.getLogger(__name__)
OnEpoch = Callable[[dict, dict], None]


RUN_ID_KEYS = ("teacher_choice", "student_arch", "seed", "temperature", "kd_weight", "ensemble_reduce", "teacher_checkpoints")


class RunResolver:
    """Resolves runs of one config against the store, cheaply enough for a 10^5-run grid: the
    store and the config's static parts are built once, and each (teacher trajectory, choice)
    is resolved once (manifests and scores files are read once per trajectory, not per run)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg, self.store = cfg, open_store(cfg)
        self.static = {  # the part of every run id that does not depend on the run
            "experiment": cfg.name,
            "data": to_dict(cfg.data),
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
            ctx = ResolveContext(store=self.store, trajectory=trajectory_name(teacher_arch, self.dataset, teacher_seed),
                                 siblings=[trajectory_name(teacher_arch, self.dataset, s) for s in seeds],
                                 epochs=self.cfg.teacher.epochs)
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


def resolve_run(cfg: ExperimentConfig) -> dict:
    """Which teacher, student and checkpoints one distillation run uses (no training yet)."""
    return RunResolver(cfg).resolve(cfg.distill)


def run_id_of(cfg: ExperimentConfig, run: dict) -> str:
    """The stable id of a resolved run (``RunResolver.run_id``)."""
    return RunResolver(cfg).run_id(run)


def load_teacher(cfg: ExperimentConfig, refs: list[TeacherRef], device: torch.device) -> FrozenTeacher | None:
    if not refs:
        return None
    store = open_store(cfg)
    models = [store.trajectory(r.trajectory).load_model(r.epoch, device) for r in refs]
    return FrozenTeacher(models, reduce=cfg.distill.ensemble_reduce)


@dataclass
class StudentRun:
    """One student's training state: what the epoch loop reads and updates."""

    cfg: ExperimentConfig
    run: dict
    device: torch.device
    splits: DataSplits
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_set: Any
    loss_fn: Callable
    targets_of: Callable
    teacher_metrics: dict[str, float]
    history: list[dict] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"{self.run['student_arch']}<-{self.run['teacher_choice']} s{self.run['seed']}"


def distill_student(cfg: ExperimentConfig, on_epoch: OnEpoch | None = None, resume: dict | None = None,
                    row_fields: dict | None = None) -> dict:
    """Train one student per ``cfg.distill``; record and return its result row.

    ``on_epoch(metrics, state)`` is called after every epoch with a resumable ``state``
    (what Tune checkpoints); passing such a state back as ``resume`` continues from it. A run
    whose id already has a row is not trained again (an O(1) lookup). ``row_fields`` are added to
    the row (e.g. the Tune trial's identity).
    """
    began = time.perf_counter()
    run = resolve_run(cfg)
    run_id = run_id_of(cfg, run)
    store = open_store(cfg)
    done = store.results.find(run_id)
    if done is not None:
        logger.info(f"[distill] run {run_id} ({run['teacher_choice']}, seed {run['seed']}) has a result already; skipping")
        return done
    student = _build_student(cfg, run)
    if resume is not None:
        _resume(student, resume, run_id)
    for epoch in range(len(student.history) + 1, cfg.student.epochs + 1):
        metrics = _student_epoch(student, epoch)
        if on_epoch is not None:
            on_epoch(metrics, {"model": student.model.state_dict(), "optimizer": student.optimizer.state_dict(),
                               "scheduler": student.scheduler.state_dict(), "history": student.history, "run_id": run_id})
    row = {**_result_row(student, run_id, time.perf_counter() - began), **(row_fields or {})}
    store.append_result(row)
    logger.info(f"[{student.tag}] final test acc {row['final_test_acc']:.2%} (val {row['final_val_acc']:.2%}); "
                f"row {run_id} recorded in {store.results.rows_dir}")
    return row


def _build_student(cfg: ExperimentConfig, run: dict) -> StudentRun:
    """Data, frozen teacher (+ its metrics), KD objective, student model and optimizer."""
    set_threads(cfg)
    device = resolve_device(cfg.device)
    splits = load_splits(cfg, device)
    refs = [TeacherRef(c["trajectory"], c["epoch"]) for c in run["teacher_checkpoints"]]
    teacher = load_teacher(cfg, refs, device)
    eval_bs = cfg.data.eval_batch_size
    teacher_metrics: dict[str, float] = {}
    if teacher is not None:
        for name in ("val", "test"):
            probs, y = predict_logits(teacher.predict_probs, make_loader(getattr(splits, name), eval_bs, shuffle=False, device=device), device)
            teacher_metrics.update(metrics_from_probs(probs, y, f"teacher_{name}"))
    train_set, loss_fn, targets_of = _kd_objective(splits, teacher, run["temperature"], run["kd_weight"], eval_bs, device)
    seed_everything(derive_seed("student-init", run["student_arch"], run["seed"]))
    model = create_model(run["student_arch"], num_classes=splits.num_classes, input_shape=splits.input_shape).to(device)
    optimizer = make_optimizer(model, cfg.student.optim)
    scheduler = make_scheduler(optimizer, cfg.student.optim, cfg.student.epochs)
    return StudentRun(cfg, run, device, splits, model, optimizer, scheduler, train_set, loss_fn, targets_of, teacher_metrics)


def _resume(student: StudentRun, state: dict, run_id: str) -> None:
    """Continue from a saved state, which must belong to this very run (same run id)."""
    if state.get("run_id") != run_id:
        raise StoreError(f"the saved student state belongs to run {state.get('run_id')!r}, not to this run "
                         f"{run_id!r} (another config); it was not used. Re-run with --restart to start over")
    student.model.load_state_dict(state["model"])
    student.optimizer.load_state_dict(state["optimizer"])
    student.scheduler.load_state_dict(state["scheduler"])
    student.history = list(state["history"])
    logger.info(f"[distill] resuming run {run_id} after epoch {len(student.history)}")


def _student_epoch(student: StudentRun, epoch: int) -> dict:
    """Train one epoch, evaluate on val and test, log; returns (and keeps) the epoch's metrics."""
    cfg, run, device = student.cfg, student.run, student.device
    t0 = time.perf_counter()
    torch.manual_seed(epoch_seed(run["seed"], epoch))
    batches = make_loader(student.train_set, cfg.student.batch_size or cfg.data.batch_size, shuffle=True, seed=run["seed"],
                          epoch=epoch, device=device, num_workers=cfg.data.num_workers)
    res = train_epoch(student.model, batches, student.optimizer, student.loss_fn, device, student.targets_of,
                      progress=f"[{student.tag}] epoch {epoch}")
    student.scheduler.step()
    metrics = {"epoch": epoch, "train_loss": res.loss, "train_acc": res.acc}
    for name in ("val", "test"):
        loader = make_loader(getattr(student.splits, name), cfg.data.eval_batch_size, shuffle=False, device=device)
        logits, y = predict_logits(student.model, loader, device)
        metrics.update(metrics_from_logits(logits, y, name))
    metrics["seconds"] = time.perf_counter() - t0
    student.history.append(metrics)
    logger.info(f"[{student.tag}] epoch {epoch:3d}/{cfg.student.epochs} loss {res.loss:.4f} acc {res.acc:6.2%} "
                f"val {metrics['val_acc']:6.2%} test {metrics['test_acc']:6.2%} {metrics['seconds']:5.2f}s")
    return metrics


def _result_row(student: StudentRun, run_id: str, wall_time_s: float) -> dict:
    """The results-file row: the run, teacher metrics, final and best-on-validation accuracies."""
    cfg, history = student.cfg, student.history
    best = max(history, key=lambda m: (m["val_acc"], -m["epoch"]))
    return {
        "run_id": run_id, "experiment": cfg.name, "dataset": cfg.data.name, **student.run,
        "epochs": cfg.student.epochs, **student.teacher_metrics,
        "final_val_acc": history[-1]["val_acc"], "final_test_acc": history[-1]["test_acc"],
        "best_val_acc": best["val_acc"], "best_val_epoch": best["epoch"], "test_acc_at_best_val": best["test_acc"],
        "val_acc_per_epoch": [m["val_acc"] for m in history], "test_acc_per_epoch": [m["test_acc"] for m in history],
        "wall_time_s": wall_time_s, "device": str(student.device),
    }


def _kd_objective(splits, teacher: FrozenTeacher | None, T: float, w: float, eval_bs: int, device: torch.device):
    """(training set, loss_fn(logits, x, y), targets_of(x, y)) for a student run.

    Without augmentation the soft targets are precomputed: the training set then yields
    sample indices as ``y``, which look up both the label and the soft target.
    """
    train = splits.train
    if teacher is None or w == 0.0:
        return train, (lambda logits, x, y: kd_loss(logits, y, None, T, 0.0)), (lambda x, y: y)
    if not splits.augmented and isinstance(train, TensorSplit):
        soft = torch.cat([teacher.soft_targets(x, T) for x, _ in make_loader(train, eval_bs, shuffle=False, device=device)])
        labels = train.y
        indexed = TensorSplit(train.x, torch.arange(len(train), device=train.x.device))
        return (indexed,
                lambda logits, x, idx: kd_loss(logits, labels[idx], soft[idx], T, w),
                lambda x, idx: labels[idx])
    return train, (lambda logits, x, y: kd_loss(logits, y, teacher.soft_targets(x, T), T, w)), (lambda x, y: y)
