"""Teacher logits per checkpoint, computed once and shared by every trial, pack and report.

A checkpoint's logits (not probabilities at one temperature: any T and either ensemble reduce
derive from them) on val, test and, when the training split has no augmentation, train, are
stored under ``<storage>/cache/logits/`` in one file per (checkpoint sha256, data, split). The
sha256 is the manifest's: the same weights give the same file whatever experiment, trajectory
name or trial asks, and changed weights can never hit a stale entry. Files are written
atomically (two trials racing write the same bytes) and read with the safe loader.

A cache file is a derived artifact anyone with write access to ``storage`` could replace, so it
records what it was computed from and a digest of itself (``CACHE_FORMAT`` 2)::

    logits [rows, classes] float, labels [rows] int64,
    checkpoint_sha256, data_key, split, labels_sha256, rows, classes,   its inputs
    tensors_sha256                                                       sha256 of logits + labels

and is verified before every use: a regular file (never a link) of bounded size, every input
equal to this cache's (the manifest's sha256 of the checkpoint, this data set's split and its
labels), floating and finite logits of shape rows x classes, labels equal to the split's, and the
digest. Anything else (an older file without these fields included) is logged with one warning
naming the file and the reason and replaced by logits recomputed from the sha256-verified
checkpoint. Not detected: a file whose logits were forged together with a matching digest and
copied inputs; only recomputing catches that (delete ``cache/logits`` to force it).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from harness import process_memo
from harness.blob_cache import default_cache
from harness.config import ExperimentConfig, config_hash, to_dict
from harness.data import DataSplits, make_loader
from harness.fileio import StoredFileError, UnsafeFileError, atomic_write_bytes, read_regular_bytes, safe_torch_load
from harness.kd import ensemble_probs
from harness.packing import pack_threads
from harness.store import CheckpointStore, StoreError, torch_bytes
from harness.teacher_choices import TeacherRef
from harness.training import metrics_from_probs, predict_logits

logger = logging.getLogger(__name__)
DATA_KEYS = ("name", "seed", "root", "num_samples", "val_fraction", "options")  # what fixes the splits' rows
CACHE_FORMAT = 2  # 2: records its inputs' sha256 and its own
INPUT_KEYS = ("format", "checkpoint_sha256", "data_key", "split", "labels_sha256", "rows", "classes")


def data_key(cfg: ExperimentConfig) -> str:
    """A short hash of what fixes the rows of the splits (not batch sizes or workers)."""
    data = to_dict(cfg.data)
    return config_hash({k: data.get(k) for k in DATA_KEYS})[:12]


def cacheable_splits(splits: DataSplits) -> tuple[str, ...]:
    """The splits whose teacher logits are fixed: val, test, and train without augmentation."""
    return ("val", "test") if splits.augmented else ("train", "val", "test")


def tensor_sha256(*tensors: Tensor) -> str:
    """sha256 over each tensor's dtype, shape and bytes (CPU, contiguous)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def split_labels(dataset: Any, batch_size: int) -> Tensor:
    """A split's labels in loader order (CPU int64): its label tensor when it has one, else read
    through an unshuffled loader."""
    for name in ("y", "labels"):
        y = getattr(dataset, name, None)
        if isinstance(y, Tensor):
            return y.detach().cpu().long()
    return torch.cat([y.cpu().long() for _, y in make_loader(dataset, batch_size, shuffle=False)])


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none), at most 200 characters."""
    text = (error.strerror if isinstance(error, OSError) and error.strerror else str(error)).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def clear_entry(path: Path) -> None:
    """Remove whatever is not a regular file at ``path`` (a directory, link, FIFO), so that an
    atomic write can take its name; the link's target is never touched. (An object is always
    one regular object: nothing to do.)"""
    if not isinstance(path, Path):
        return
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    elif not stat.S_ISREG(info.st_mode):
        path.unlink()


class LogitCache:
    """``logits(ref, split)``: a checkpoint's logits [n, C] on one split, from disk (verified) or computed once."""

    def __init__(self, cfg: ExperimentConfig, store: CheckpointStore, splits: DataSplits, device: torch.device) -> None:
        self.cfg, self.store, self.splits, self.device = cfg, store, splits, device
        self.folder = store.cache_dir / "logits"
        self.key = data_key(cfg)
        self.hits = self.misses = 0
        self._sha256: dict[TeacherRef, str] = {}  # one manifest read per checkpoint
        self._labels: dict[str, Tensor] = {}  # one label read per split

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

    def labels(self, split: str) -> Tensor:
        """The split's labels (CPU int64), what every cache file of that split must hold."""
        if split not in self._labels:
            self._labels[split] = split_labels(getattr(self.splits, split), self.cfg.data.eval_batch_size)
        return self._labels[split]

    def inputs(self, ref: TeacherRef, split: str) -> dict[str, Any]:
        """What a cache file of ``ref`` on ``split`` must record as its inputs."""
        y = self.labels(split)
        return {
            "format": CACHE_FORMAT,
            "checkpoint_sha256": self.sha256(ref),
            "data_key": self.key,
            "split": split,
            "labels_sha256": tensor_sha256(y),
            "rows": int(y.shape[0]),
            "classes": int(self.splits.num_classes),
        }

    def logits(self, ref: TeacherRef, split: str) -> Tensor:
        """Logits of ``ref`` on ``split`` (on the cache's device)."""
        return self.entry(ref, split)["logits"]

    def entry(self, ref: TeacherRef, split: str) -> dict[str, Tensor]:
        """``{"logits": [n, C], "labels": [n]}`` of ``ref`` on ``split`` (on the cache's device)."""
        if split not in cacheable_splits(self.splits):
            raise ValueError(
                f"the {split} split is augmented: its teacher outputs change every epoch and are not cached"
            )
        key = lambda: (self.sha256(ref), self.key, split, str(self.device))  # noqa: E731 (what fixed the table)
        return process_memo.LOGITS.get_or_make(key, lambda: self._load(ref, split))

    def _load(self, ref: TeacherRef, split: str) -> dict[str, Tensor]:
        """The verified cache file of ``ref`` on ``split``, or the table computed (and cached) anew."""
        path = self.path(ref, split)
        cached, problem = self._read(ref, split, path)
        if cached is None:
            if problem is not None:
                logger.warning(f"[logits] {problem}; recomputing it from the verified checkpoint")
            self.misses += 1
            cached = self._compute(ref, path)[split]
        else:
            self.hits += 1
        return {k: v.to(self.device) for k, v in cached.items()}

    def _read(self, ref: TeacherRef, split: str, path: Path) -> tuple[dict[str, Tensor] | None, str | None]:
        """The verified ``{"logits", "labels"}`` of a cache file, or (None, why not) (None, None: no file)."""
        want = self.inputs(ref, split)
        cap = 2 * want["rows"] * (want["classes"] * 8 + 8) + (1 << 20)
        try:  # a regular file (no link, FIFO or folder) of bounded size; on an object store, this node's copy
            data = read_regular_bytes(path, cap, "cached teacher logits") if isinstance(path, Path) else None
            if data is None:
                data = default_cache().get_named(path, cap, "cached teacher logits")
        except FileNotFoundError:
            return None, None
        except (OSError, StoredFileError) as e:
            return None, str(e).split(";")[0] if isinstance(e, StoredFileError) else f"{path}: {first_line(e)}"
        try:
            entry = safe_torch_load(data, what=f"cached teacher logits {path}")
        except UnsafeFileError:
            return None, f"{path} holds objects other than tensors and plain data (refused by the safe loader)"
        except Exception as e:  # truncated, not a torch file, planted objects: all recomputed
            return None, f"{path} does not load ({first_line(e)})"
        problem = verify_entry(entry, want, self.labels(split))
        if problem:
            if not isinstance(path, Path):
                default_cache().drop_named(path)  # this node's copy or the object: fetched or recomputed anew
            return None, f"{path} {problem}"
        return {"logits": entry["logits"], "labels": entry["labels"]}, None

    def _compute(self, ref: TeacherRef, want: Path) -> dict[str, dict[str, Tensor]]:
        """One load of the checkpoint fills every cacheable split whose file is missing (and ``want``)."""
        began = time.perf_counter()
        model = self.store.trajectory(ref.trajectory).load_model(ref.epoch, self.device)  # sha256-verified
        out = {}
        for split in cacheable_splits(self.splits):
            path = self.path(ref, split)
            if path != want and path.is_file() and not path.is_symlink():
                continue  # verified when it is read
            loader = make_loader(
                getattr(self.splits, split), self.cfg.data.eval_batch_size, shuffle=False, device=self.device
            )
            with pack_threads(self.device):  # the same bits whoever computes them
                z, y = predict_logits(model, loader, self.device)
            out[split] = {"logits": z, "labels": y}
            clear_entry(path)
            record = {**self.inputs(ref, split), "logits": z, "labels": y, "tensors_sha256": tensor_sha256(z, y)}
            atomic_write_bytes(path, torch_bytes(record))
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


def verify_entry(entry: Any, want: dict[str, Any], labels: Tensor) -> str | None:
    """Why a loaded cache file cannot be used for ``want`` (its expected inputs), or None."""
    if not isinstance(entry, dict):
        return f"holds a {type(entry).__name__}, not a logit table"
    missing = [k for k in (*INPUT_KEYS, "tensors_sha256") if k not in entry]
    if missing:
        return f"records no {', '.join(missing)} (an older cache format or not written by this harness)"
    wrong = [f"{k} {str(entry[k])[:16]!r} != {str(want[k])[:16]!r}" for k in INPUT_KEYS if not _same(entry[k], want[k])]
    if wrong:
        return f"was computed from other inputs ({'; '.join(wrong)})"
    z, y = entry.get("logits"), entry.get("labels")
    if not (isinstance(z, Tensor) and isinstance(y, Tensor)):
        return "does not hold logits and labels tensors"
    if not z.is_floating_point() or y.dtype != torch.int64:
        return f"holds {z.dtype} logits and {y.dtype} labels, not floating logits and int64 labels"
    if tuple(z.shape) != (want["rows"], want["classes"]) or tuple(y.shape) != (want["rows"],):
        return f"holds logits of shape {tuple(z.shape)}, not {want['rows']} rows x {want['classes']} classes"
    if not bool(torch.isfinite(z).all()):
        return "holds non-finite logits (NaN or inf)"
    if not torch.equal(y.cpu(), labels):
        return "holds labels that are not this split's"
    if entry["tensors_sha256"] != tensor_sha256(z, y):
        return "does not match its own sha256 (changed after it was written)"
    return None


def _same(found: Any, expected: Any) -> bool:
    """Equal and of the same type (a tensor or other object never compares equal to a recorded value)."""
    return type(found) is type(expected) and found == expected
