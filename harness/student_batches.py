"""What each member of a student pack learns from, batch by batch: data order, labels, soft targets.

Every member sees the batches it would see alone: the order of its own seed (the same
``epoch_order(n, seed, epoch)`` as every loader), its own teacher's soft targets at its own
temperature. Two paths:

* **cached** (in-memory training split without augmentation): the members' soft targets are
  precomputed for the whole split from the teachers' cached logits (``teacher_logits.py``), one
  table per distinct (teacher, temperature); a batch gathers rows by index. No teacher runs.
* **per batch** (augmented or file-backed data): one loader per distinct student seed; each
  distinct teacher runs once per (seed, batch), as one vmapped pass over its ensemble members
  (``FrozenTeacher``), and serves every member that sees that batch, at each member's own T.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import torch
from torch import Tensor

from harness.config import ExperimentConfig
from harness.data import DataSplits, TensorSplit, epoch_order, make_loader
from harness.kd import FrozenTeacher, ensemble_probs, kd_loss_members
from harness.teacher_choices import TeacherRef
from harness.teacher_logits import LogitCache

Batch = tuple[Tensor, Tensor, Tensor]  # x [N, B, ...], labels [N, B], soft targets [N, B, C]


class Learner(Protocol):
    """What one pack member learns from: its seed (init, data order), its teacher checkpoints
    (none: labels alone), the temperature and the weight of the KD term."""

    @property
    def seed(self) -> int: ...

    @property
    def teachers(self) -> tuple[TeacherRef, ...]: ...

    @property
    def temperature(self) -> float: ...

    @property
    def kd_weight(self) -> float: ...


class PackBatches:
    """``epoch(e)`` yields the pack's batches; ``loss(logits, labels, soft)`` the members' KD losses."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        splits: DataSplits,
        members: Sequence[Learner],
        cache: LogitCache,
        device: torch.device,
    ) -> None:
        self.cfg, self.splits, self.cache, self.device = cfg, splits, cache, device
        self.batch_size = cfg.student.batch_size or cfg.data.batch_size
        self.reduce = cfg.distill.ensemble_reduce
        self.seeds = list(dict.fromkeys(int(m.seed) for m in members))
        self.group = torch.tensor([self.seeds.index(int(m.seed)) for m in members], device=device)
        self.temperature = torch.tensor([float(m.temperature) for m in members], device=device)
        self.kd_weight = torch.tensor([float(m.kd_weight) for m in members], device=device)
        # a member with kd_weight 0 learns from labels alone: no teacher to run for it
        self.refs = [tuple(m.teachers) if float(m.kd_weight) != 0.0 else () for m in members]
        self.cached = not splits.augmented and isinstance(splits.train, TensorSplit)
        if self.cached:
            self.tables, self.table_of = self._soft_tables()
        else:
            self.teachers = {refs: _load_teacher(cache, refs, self.reduce) for refs in dict.fromkeys(self.refs) if refs}

    def loss(self, logits: Tensor, labels: Tensor, soft: Tensor) -> Tensor:
        return kd_loss_members(logits, labels, soft, self.temperature, self.kd_weight)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        return self._cached_epoch(epoch) if self.cached else self._teacher_epoch(epoch)

    # ----------------------------------------------------------------- cached soft targets

    def _soft_tables(self) -> tuple[Tensor, Tensor]:
        """One soft-target table per distinct (teacher, T) -> ([U, n, C], member -> table)."""
        keys = [(refs, float(t)) for refs, t in zip(self.refs, self.temperature.tolist())]
        distinct = list(dict.fromkeys(keys))
        n, c = len(self.splits.train), self.splits.num_classes
        logits = {refs: self.cache.stacked(list(refs), "train") for refs, _ in distinct if refs}  # once per teacher
        tables = [
            ensemble_probs(logits[refs], t, self.reduce) if refs else torch.full((n, c), 1.0 / c, device=self.device)
            for refs, t in distinct
        ]
        return torch.stack(tables), torch.tensor([distinct.index(k) for k in keys], device=self.device)

    def _orders(self, epoch: int, n: int) -> Tensor:
        """Each member's sample order of this epoch [N, n] (its seed's, as ``make_loader`` draws it)."""
        return torch.stack([epoch_order(n, s, epoch) for s in self.seeds]).to(self.device)[self.group]

    def _cached_epoch(self, epoch: int) -> Iterator[Batch]:
        train = self.splits.train
        order = self._orders(epoch, len(train))
        table = self.table_of[:, None]
        for start in range(0, len(train), self.batch_size):
            idx = order[:, start : start + self.batch_size]
            yield train.x[idx], train.y[idx], self.tables[table, idx]

    # ----------------------------------------------------------------- teachers per batch

    def _teacher_epoch(self, epoch: int) -> Iterator[Batch]:
        loaders = [
            make_loader(
                self.splits.train,
                self.batch_size,
                shuffle=True,
                seed=s,
                epoch=epoch,
                device=self.device,
                num_workers=self.cfg.data.num_workers,
            )
            for s in self.seeds
        ]
        for group_batches in zip(*loaders):
            xs = torch.stack([x for x, _ in group_batches])
            ys = torch.stack([y for _, y in group_batches])
            yield xs[self.group], ys[self.group], self._soft(xs)

    def _soft(self, xs: Tensor) -> Tensor:
        """Members' soft targets for their batches: each (seed, teacher) pair runs once."""
        logits: dict[tuple, Tensor] = {}
        out = []
        for i, refs in enumerate(self.refs):
            g = int(self.group[i])
            if not refs:
                c = self.splits.num_classes
                out.append(torch.full((xs.shape[1], c), 1.0 / c, device=self.device))
                continue
            if (g, refs) not in logits:
                logits[(g, refs)] = self.teachers[refs].stacked_logits(xs[g])
            out.append(ensemble_probs(logits[(g, refs)], float(self.temperature[i]), self.reduce))
        return torch.stack(out)


def _load_teacher(cache: LogitCache, refs: tuple, reduce: str) -> FrozenTeacher:
    models = [cache.store.trajectory(r.trajectory).load_model(r.epoch, cache.device) for r in refs]
    return FrozenTeacher(models, reduce=reduce)
