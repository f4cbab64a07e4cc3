"""Checkpoint store: one folder per teacher trajectory, atomic writes, sha256-verified reads.

Layout (DESIGN.md section 4)::

    <storage>/<experiment>/trajectories/<arch>-<dataset>-s<seed>/
        manifest.json      trajectory metadata + one entry per saved checkpoint
        ckpt-eNNNN.pt      model weights at epoch NNNN (+ arch, num_classes, input_shape)
        resume.pt          optimizer/scheduler state at the last finished epoch
    <storage>/<experiment>/scores/<trajectory>.json   (written by the scorer)
    <storage>/<experiment>/results.jsonl + results.csv (one row per student run)
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"
RESUME = "resume.pt"


class StoreError(RuntimeError):
    """A checkpoint or manifest is missing, unfinished or corrupt; the message says which."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def trajectory_name(arch: str, dataset: str, seed: int) -> str:
    return f"{arch}-{dataset}-s{seed}"


class Trajectory:
    """One teacher run (arch x dataset x seed) and its checkpoints on disk."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.name = self.dir.name

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict:
        if not self.exists():
            raise StoreError(f"trajectory {self.name} has no manifest at {self.manifest_path}; run `ckd teachers` first")
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise StoreError(f"manifest {self.manifest_path} is corrupt ({e}); delete the trajectory folder to retrain it") from None

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def is_finished(self) -> bool:
        return self.exists() and bool(self.manifest().get("finished"))

    def checkpoints(self) -> list[dict]:
        return list(self.manifest().get("checkpoints", [])) if self.exists() else []

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
        atomic_write_bytes(path, data)
        entry = {"epoch": epoch, "file": path.name, "sha256": sha256_bytes(data), **metrics}
        manifest["checkpoints"] = [c for c in manifest.get("checkpoints", []) if c["epoch"] != epoch] + [entry]
        manifest["checkpoints"].sort(key=lambda c: c["epoch"])

    def load_checkpoint(self, epoch: int, map_location: str | torch.device = "cpu") -> dict:
        """Load the payload of one checkpoint after checking its sha256 against the manifest."""
        entries = {c["epoch"]: c for c in self.checkpoints()}
        if epoch not in entries:
            raise StoreError(f"trajectory {self.name} has no checkpoint at epoch {epoch}; saved: {sorted(entries)}")
        path = self.dir / entries[epoch]["file"]
        if not path.is_file():
            raise StoreError(f"checkpoint file {path} is missing; delete {self.dir} to retrain the trajectory")
        data = path.read_bytes()
        if sha256_bytes(data) != entries[epoch]["sha256"]:
            raise StoreError(
                f"checkpoint {path} does not match its sha256 in the manifest (corrupt or changed); "
                f"it will not be used as a teacher. Delete {self.dir} to retrain the trajectory"
            )
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)

    def load_model(self, epoch: int, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The checkpoint's model in eval mode with gradients off (a frozen teacher)."""
        from harness.models import create_model

        payload = self.load_checkpoint(epoch, map_location=device)
        model = create_model(payload["arch"], num_classes=payload["num_classes"], input_shape=tuple(payload["input_shape"]))
        model.load_state_dict(payload["model"])
        model.to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    @property
    def resume_path(self) -> Path:
        return self.dir / RESUME

    def save_resume(self, state: dict) -> None:
        atomic_write_bytes(self.resume_path, torch_bytes(state))

    def load_resume(self, map_location: str | torch.device = "cpu") -> dict | None:
        if not self.resume_path.is_file():
            return None
        try:
            return torch.load(self.resume_path, map_location=map_location, weights_only=False)
        except Exception as e:  # a torn or corrupt resume file: restart the trajectory, say so
            logger.warning(f"[store] {self.resume_path} is unreadable ({e}); restarting {self.name} from epoch 0")
            return None


class CheckpointStore:
    """The experiment folder: trajectories, scores and the results table."""

    def __init__(self, storage: str | Path, experiment: str) -> None:
        self.root = Path(storage) / experiment

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
        return Trajectory(self.trajectories_dir / name)

    def trajectories(self) -> list[Trajectory]:
        if not self.trajectories_dir.is_dir():
            return []
        return [Trajectory(p) for p in sorted(self.trajectories_dir.iterdir()) if (p / MANIFEST).is_file()]

    @property
    def results_jsonl(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    def read_results(self) -> list[dict]:
        if not self.results_jsonl.is_file():
            return []
        rows = []
        for i, line in enumerate(self.results_jsonl.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning(f"[store] skipping unreadable line {i} of {self.results_jsonl}")
        return rows

    def append_result(self, row: dict) -> None:
        """Append a row to results.jsonl (the source of truth) and rewrite the flat results.csv.

        A row with a ``run_id`` already present replaces nothing and is skipped, so a retried
        run never appears twice.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".results.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # several trial processes may append at once
            rows = self.read_results()
            run_id = row.get("run_id")
            if run_id is not None and any(r.get("run_id") == run_id for r in rows):
                return
            with open(self.results_jsonl, "a") as f:
                f.write(json.dumps(row, sort_keys=True, default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.write_results_csv(rows + [row])

    def write_results_csv(self, rows: list[dict]) -> None:
        flat = [_flatten(r) for r in rows]
        columns = sorted({k for r in flat for k in r})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)
        atomic_write_bytes(self.results_csv, buf.getvalue().encode())


def _flatten(row: dict, prefix: str = "") -> dict:
    """Nested dicts become dotted columns; lists become JSON strings (one CSV cell each)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v, default=str)
        else:
            out[key] = v
    return out
