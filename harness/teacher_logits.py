"""Teacher logits per checkpoint, computed once and shared by every trial, pack and report.

A checkpoint's logits (not probabilities at one temperature: any T and either ensemble reduce
derive from them) on val, test and, when the training split has no augmentation, train, are
stored under ``<storage>/cache/logits/`` in one file per (checkpoint sha256, data, split). The
sha256 is the manifest's: the same weights give the same file whatever experiment, trajectory
name or trial asks, and changed weights can never hit a stale entry. Files are written
atomically (two trials racing write the same bytes) and read with the safe loader; a file whose
row count does not match the split is recomputed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import Tensor

from harness.config import ExperimentConfig, config_hash, to_dict
from harness.data import DataSplits, make_loader
from harness.fileio import UnsafeFileError, atomic_write_bytes, safe_torch_load
from harness.kd import ensemble_probs
from harness.store import CheckpointStore, StoreError, torch_bytes
from harness.teacher_choices import TeacherRef
from harness.training import metrics_from_probs, predict_logits

logger = logging.getLogger(__name__)
DATA_KEYS = ("name", "seed", "root", "num_samples", "val_fraction", "options")  # what fixes the splits' rows


def data_key(cfg: ExperimentConfig) -> str:
    """A short hash of what fixes the rows of the splits (not batch sizes or workers)."""
    data = to_dict(cfg.data)
    return config_hash({k: data.get(k) for k in DATA_KEYS})[:12]


def cacheable_splits(splits: DataSplits) -> tuple[str, ...]:
    """The splits whose teacher logits are fixed: val, test, and train without augmentation."""
    return ("val", "test") if splits.augmented else ("train", "val", "test")


class LogitCache:
    """``logits(ref, split)``: a checkpoint's logits [n, C] on one split, from disk or computed once."""

    def __init__(self, cfg: ExperimentConfig, store: CheckpointStore, splits: DataSplits, device: torch.device) -> None:
        self.cfg, self.store, self.splits, self.device = cfg, store, splits, device
        self.folder = store.cache_dir / "logits"
        self.key = data_key(cfg)
        self.hits = self.misses = 0
        self._sha256: dict[TeacherRef, str] = {}  # one manifest read per checkpoint

    def path(self, ref: TeacherRef, split: str) -> Path:
        return self.folder / f"{self.sha256(ref)[:32]}-{self.key}-{split}.pt"

    def sha256(self, ref: TeacherRef) -> str:
        if ref not in self._sha256:
            entries = {c["epoch"]: c for c in self.store.trajectory(ref.trajectory).checkpoints()}
            if ref.epoch not in entries:
                raise StoreError(
                    f"trajectory {ref.trajectory} has no checkpoint at epoch {ref.epoch}; saved: {sorted(entries)}"
                )
            self._sha256[ref] = str(entries[ref.epoch]["sha256"])
        return self._sha256[ref]

    def logits(self, ref: TeacherRef, split: str) -> Tensor:
        """Logits of ``ref`` on ``split`` (on the cache's device)."""
        return self.entry(ref, split)["logits"]

    def entry(self, ref: TeacherRef, split: str) -> dict[str, Tensor]:
        """``{"logits": [n, C], "labels": [n]}`` of ``ref`` on ``split`` (on the cache's device)."""
        if split not in cacheable_splits(self.splits):
            raise ValueError(
                f"the {split} split is augmented: its teacher outputs change every epoch and are not cached"
            )
        path, n = self.path(ref, split), len(getattr(self.splits, split))
        cached = self._read(path, n)
        if cached is None:
            self.misses += 1
            cached = self._compute(ref, path)[split]
        else:
            self.hits += 1
        return {k: v.to(self.device) for k, v in cached.items()}

    def _read(self, path: Path, rows: int) -> dict[str, Tensor] | None:
        if not path.is_file():
            return None
        try:
            entry = safe_torch_load(path, what=f"cached teacher logits {path}")
        except UnsafeFileError as e:
            logger.warning(f"[logits] {e}; recomputing")
            return None
        z = entry.get("logits") if isinstance(entry, dict) else None
        y = entry.get("labels") if isinstance(entry, dict) else None
        if not (isinstance(z, Tensor) and isinstance(y, Tensor) and z.ndim == 2 and z.shape[0] == rows == y.shape[0]):
            logger.warning(f"[logits] {path} does not hold {rows} rows of logits and labels; recomputing")
            return None
        return {"logits": z, "labels": y}

    def _compute(self, ref: TeacherRef, want: Path) -> dict[str, dict[str, Tensor]]:
        """One load of the checkpoint fills every cacheable split (the other splits come next)."""
        began = time.perf_counter()
        model = self.store.trajectory(ref.trajectory).load_model(ref.epoch, self.device)
        out = {}
        for split in cacheable_splits(self.splits):
            path = self.path(ref, split)
            if path != want and path.is_file():
                continue
            loader = make_loader(
                getattr(self.splits, split), self.cfg.data.eval_batch_size, shuffle=False, device=self.device
            )
            z, y = predict_logits(model, loader, self.device)
            out[split] = {"logits": z, "labels": y}
            atomic_write_bytes(path, torch_bytes(out[split]))
        logger.info(
            f"[logits] {ref.trajectory} e{ref.epoch}: teacher logits on {', '.join(out)} computed and cached "
            f"({time.perf_counter() - began:.2f}s)"
        )
        return out

    def stacked(self, refs: list[TeacherRef], split: str) -> Tensor:
        """The members' logits on ``split`` as one tensor [K, n, C]."""
        return torch.stack([self.logits(r, split) for r in refs])

    def teacher_metrics(self, refs: list[TeacherRef], reduce: str) -> dict[str, float]:
        """Accuracy, loss and confidence of the teacher (ensemble) on val and test, from the cache."""
        metrics: dict[str, float] = {}
        for split in ("val", "test"):
            entries = [self.entry(r, split) for r in refs]
            probs = ensemble_probs(torch.stack([e["logits"] for e in entries]), 1.0, reduce)
            metrics.update(metrics_from_probs(probs, entries[0]["labels"], f"teacher_{split}"))
        return metrics
