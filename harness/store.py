"""Checkpoint store: one folder per teacher trajectory, atomic writes, sha256-verified reads.

Layout (DESIGN.md section 4)::

    <storage>/<experiment>/trajectories/<arch>-<dataset>-s<seed>/
        manifest.json      trajectory metadata + one entry per saved checkpoint
        ckpt-eNNNN.pt      model weights at epoch NNNN (+ arch, num_classes, input_shape)
        resume.pt          optimizer/scheduler state at the last finished epoch
    <storage>/<experiment>/scores/<trajectory>.json   (written by the scorer)
    <storage>/<experiment>/results/rows/<run_id>.json (one row per student run; harness/results.py)
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch

from harness.blob_cache import BlobMismatch, default_cache
from harness.config import is_safe_name
from harness.fileio import (
    JSON_MAX_BYTES,
    StoredFileError,
    UnsafeFileError,
    atomic_write_bytes,
    atomic_write_json,
    exclusive_lock,
    read_json_object,
    read_regular_bytes,
    remove_stale_temps,
    safe_torch_load,
    sha256_bytes,
)
from harness.object_leases import fence
from harness.objects import ObjectPath, location
from harness.results import ResultsTable

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"
RESUME = "resume.pt"
LOCK = ".lock"
__all__ = ["CheckpointStore", "StoreError", "Trajectory", "safe_slug", "torch_bytes", "trajectory_name"]


class StoreError(RuntimeError):
    """A checkpoint or manifest is missing, unfinished or corrupt; the message says which."""


class NoManifest(StoreError):
    """The trajectory has no manifest (not trained yet)."""


def safe_slug(value: str, key: str) -> str:
    """``value`` if it is a safe single path component (letters, digits, ``._-``; not ``.``/``..``)."""
    if not is_safe_name(value):
        raise StoreError(
            f"config key {key!r}: {value!r} is not a safe folder name: use letters, digits, "
            "'.', '_' and '-' only (no '/', not '.' or '..')"
        )
    return str(value)


def torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def trajectory_name(arch: str, dataset: str, seed: int) -> str:
    return f"{arch}-{dataset}-s{seed}"


CHECKPOINT_MAX_BYTES = 16 * 2**30  # one checkpoint file: far above any model this harness trains


def _check_manifest_shape(path: Path, manifest: dict, fix: str) -> dict:
    """``manifest`` if its checkpoint list has the shape this module writes (each entry: an int
    epoch, a safe file name inside the folder, a sha256); a ``StoreError`` naming it otherwise."""
    entries = manifest.get("checkpoints", [])
    ok = isinstance(entries, list) and all(
        isinstance(c, dict)
        and isinstance(c.get("epoch"), int)
        and isinstance(c.get("file"), str)
        and is_safe_name(c["file"])
        and isinstance(c.get("sha256"), str)
        for c in entries
    )
    if not ok:
        raise StoreError(f"manifest {path} is not shaped like a manifest of this harness (its checkpoints); {fix}")
    return manifest


class Trajectory:
    """One teacher run (arch x dataset x seed) and its checkpoints on disk."""

    def __init__(self, directory: Path) -> None:
        self.dir = location(directory)
        self.name = self.dir.name

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict:
        """The manifest (one read: a missing one is a ``NoManifest``, with no look beforehand)."""
        fix = f"delete the trajectory folder {self.dir} to retrain it"
        try:  # a regular file of bounded size only (no symlink, FIFO, device), UTF-8 JSON object
            manifest = read_json_object(self.manifest_path, JSON_MAX_BYTES, "manifest", fix)
        except (FileNotFoundError, NotADirectoryError):  # (a file where the trajectory's folder belongs: none)
            raise NoManifest(
                f"trajectory {self.name} has no manifest at {self.manifest_path}; run `ckd teachers` first"
            ) from None
        except StoredFileError as e:
            raise StoreError(str(e)) from None
        return _check_manifest_shape(self.manifest_path, manifest, fix)

    def manifest_or_none(self) -> dict | None:
        """The manifest, or None when the trajectory has none yet."""
        try:
            return self.manifest()
        except NoManifest:
            return None

    def write_manifest(self, manifest: dict) -> None:
        self._fence()
        atomic_write_json(self.manifest_path, manifest)

    def _fence(self) -> None:
        """On an object store, ``LeaseLost`` if this process took the trajectory's lease and no
        longer safely holds it (``object_leases.fence``): a stalled writer never overwrites the
        one that took over. (On a folder the ``flock`` cannot be lost while its holder lives.)"""
        if isinstance(self.dir, ObjectPath):
            fence(self.dir / LOCK)

    def is_finished(self) -> bool:
        return bool((self.manifest_or_none() or {}).get("finished"))

    def checkpoints(self) -> list[dict]:
        return list((self.manifest_or_none() or {}).get("checkpoints", []))

    def finished_epochs(self) -> list[int]:
        """Saved epochs of a finished trajectory; an unfinished one is an error (not a teacher yet)."""
        m = self.manifest()
        if not m.get("finished"):
            last = m["checkpoints"][-1]["epoch"] if m.get("checkpoints") else 0
            raise StoreError(
                f"trajectory {self.name} is not finished (epoch {last} of {m.get('epochs')}); "
                "run `ckd teachers` to finish it"
            )
        return [c["epoch"] for c in m["checkpoints"]]

    def checkpoint_path(self, epoch: int) -> Path:
        return self.dir / f"ckpt-e{epoch:04d}.pt"

    def save_checkpoint(self, epoch: int, payload: dict, manifest: dict, metrics: dict) -> None:
        """Write the weights file, then record it (with its sha256) in the manifest."""
        data = torch_bytes(payload)
        path = self.checkpoint_path(epoch)
        self._fence()
        atomic_write_bytes(path, data)
        entry = {"epoch": epoch, "file": path.name, "sha256": sha256_bytes(data), **metrics}
        manifest["checkpoints"] = [c for c in manifest.get("checkpoints", []) if c["epoch"] != epoch] + [entry]
        manifest["checkpoints"].sort(key=lambda c: c["epoch"])

    def load_checkpoint(self, epoch: int, map_location: str | torch.device = "cpu") -> dict:
        """Load the payload of one checkpoint after checking its sha256 against the manifest
        (with the safe loader: a tampered file is refused, never unpickled)."""
        entries = {c["epoch"]: c for c in self.checkpoints()}
        if epoch not in entries:
            raise StoreError(f"trajectory {self.name} has no checkpoint at epoch {epoch}; saved: {sorted(entries)}")
        path = self.dir / entries[epoch]["file"]
        missing = StoreError(f"checkpoint file {path} is missing; delete {self.dir} to retrain the trajectory")
        mismatch = StoreError(
            f"checkpoint {path} does not match its sha256 in the manifest (corrupt or changed); "
            f"it will not be used as a teacher. Delete {self.dir} to retrain the trajectory"
        )
        if isinstance(self.dir, ObjectPath):  # verified bytes from this node's cache, or one GET (then kept)
            try:
                data = default_cache().get(path, entries[epoch]["sha256"], CHECKPOINT_MAX_BYTES, "checkpoint")
            except FileNotFoundError:
                raise missing from None
            except BlobMismatch:
                raise mismatch from None
            except StoredFileError as e:
                raise StoreError(str(e)) from None
        else:
            if not path.is_file():
                raise missing
            try:
                data = read_regular_bytes(path, CHECKPOINT_MAX_BYTES, "checkpoint")
            except StoredFileError as e:
                raise StoreError(str(e)) from None
            if sha256_bytes(data) != entries[epoch]["sha256"]:
                raise mismatch
        try:
            return safe_torch_load(data, map_location=map_location, what=f"checkpoint {path}")
        except UnsafeFileError as e:
            raise StoreError(str(e)) from None

    def load_model(self, epoch: int, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The checkpoint's model in eval mode with gradients off (a frozen teacher)."""
        from harness.models import create_model

        payload = self.load_checkpoint(epoch, map_location=device)
        model = create_model(
            payload["arch"], num_classes=payload["num_classes"], input_shape=tuple(payload["input_shape"])
        )
        model.load_state_dict(payload["model"])
        model.to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    @property
    def resume_path(self) -> Path:
        return self.dir / RESUME

    def save_resume(self, state: dict) -> None:
        data = torch_bytes(state)
        self._fence()
        atomic_write_bytes(self.resume_path, data)

    def load_resume(self, map_location: str | torch.device = "cpu") -> dict | None:
        """The resume state, or None when there is none or it is torn (restart, with a warning);
        a file the safe loader refuses is an error (nothing is trained over it), and so is an
        object store that does not answer (an object is never torn: restarting would only throw
        the finished epochs away)."""
        if not self.resume_path.is_file():
            return None
        try:
            data = read_regular_bytes(self.resume_path, CHECKPOINT_MAX_BYTES, "resume state")
            return safe_torch_load(data, map_location=map_location, what=f"resume state {self.resume_path}")
        except (UnsafeFileError, StoredFileError) as e:
            raise StoreError(str(e)) from None
        except OSError as e:
            if isinstance(self.dir, ObjectPath):
                raise StoreError(f"cannot read {self.resume_path} ({e}); re-run when the object store answers") from e
            return self._torn_resume(e)
        except Exception as e:  # a torn or corrupt resume file: restart the trajectory, say so
            return self._torn_resume(e)

    def _torn_resume(self, error: Exception) -> None:
        logger.warning(f"[store] {self.resume_path} is unreadable ({error}); restarting {self.name} from epoch 0")

    def lock(self):
        """Exclusive right to train this trajectory (a second process waits, with a message)."""

        def waiting(holder: str) -> None:
            logger.info(f"[{self.name}] is being trained by {holder}; waiting for it to finish or die")

        return exclusive_lock(self.dir / LOCK, waiting)

    def remove_stale_temps(self) -> int:
        return remove_stale_temps(self.dir)


class CheckpointStore:
    """The experiment folder: trajectories, scores and the results table, all inside ``storage``."""

    def __init__(self, storage: str | Path, experiment: str) -> None:
        self.storage = location(storage)
        self.root = self.storage / safe_slug(experiment, "name")

    @property
    def trajectories_dir(self) -> Path:
        return self.root / "trajectories"

    @property
    def scores_dir(self) -> Path:
        return self.root / "scores"

    @property
    def cache_dir(self) -> Path:
        return self.root.parent / "cache"

    def trajectory(self, name: str) -> Trajectory:
        return Trajectory(self.trajectories_dir / safe_slug(name, "trajectory"))

    def trajectories(self) -> list[Trajectory]:
        if not self.trajectories_dir.is_dir():
            return []
        return [Trajectory(p) for p in sorted(self.trajectories_dir.iterdir()) if (p / MANIFEST).is_file()]

    @property
    def results(self) -> ResultsTable:
        """The results table (harness/results.py): O(1) appends, compacted views for reading."""
        if isinstance(self.root, ObjectPath):
            from harness.results_objects import ObjectResultsTable

            return ObjectResultsTable(self.root)
        return ResultsTable(self.root)

    @property
    def results_jsonl(self) -> Path:
        return self.results.jsonl

    @property
    def results_csv(self) -> Path:
        return self.results.csv

    @property
    def results_rejected(self) -> Path:
        return self.results.rejected_jsonl

    def read_results(self) -> list[dict]:
        """Every valid result row (see ``ResultsTable.read``)."""
        return self.results.read()

    def append_result(self, row: dict) -> bool:
        """Record a finished run's row in O(1), verified by reading it back; False if that run has
        a valid row already (see ``ResultsTable.append``)."""
        return self.results.append(row)

    def compact_results(self) -> int:
        """Rebuild results.jsonl / results.csv from the valid row files; returns the number of rows."""
        return self.results.compact()
