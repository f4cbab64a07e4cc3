"""Experiment-level helpers every stage shares: the store, the data splits, the trajectories."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from harness import process_memo
from harness.config import ConfigError, ExperimentConfig, seed_list, to_dict
from harness.config_validation import device_data_setting
from harness.data import DataSplits, TensorSplit, build_splits, dataset_options, to_device_images, use_device_images
from harness.objects import ObjectPath, ObjectStoreError, node_local_dir, storage_location
from harness.store import CheckpointStore, trajectory_name

logger = logging.getLogger(__name__)


def open_store(cfg: ExperimentConfig) -> CheckpointStore:
    return CheckpointStore(cfg.storage, cfg.name)


def load_splits(cfg: ExperimentConfig, device: torch.device | str | None = None) -> DataSplits:
    """The experiment's train/val/test splits (same for every teacher and student).

    With ``device``, in-memory splits are moved there once (GPU-resident data: no host-to-device
    copy per batch), and CIFAR-shaped image sets go there too when ``data.device_data`` says so
    (``place_splits``). Without, ``data.device_data=on`` is only checked (preflight). A Tune
    trial worker keeps the last splits for its next trial (``harness/process_memo.py``).
    """

    def key() -> tuple[str, str, str]:  # everything that fixes the splits, and where they live
        return json.dumps(to_dict(cfg.data), sort_keys=True, default=str), str(open_store(cfg).cache_dir), str(device)

    return process_memo.SPLITS.get_or_make(key, lambda: _load_splits(cfg, device))


def data_cache_dir(cfg: ExperimentConfig) -> Path:
    """Where generated data sets are cached: ``<storage>/cache``, or a folder on this node when
    storage is an object store (each node generates the same arrays from the same seed)."""
    folder = open_store(cfg).cache_dir
    return folder if isinstance(folder, Path) else node_local_dir("data")


def _load_splits(cfg: ExperimentConfig, device: torch.device | str | None) -> DataSplits:
    options = dict(cfg.data.options)
    if "num_samples" in dataset_options(cfg.data.name):
        options.setdefault("num_samples", cfg.data.num_samples)
    try:
        splits = build_splits(
            cfg.data.name,
            root=cfg.data.root,
            storage_dir=data_cache_dir(cfg),
            seed=cfg.data.seed,
            val_fraction=cfg.data.val_fraction,
            augment=cfg.data.augment,
            download=cfg.data.download,
            **options,
        )
    except TypeError as e:
        raise ConfigError(f"config key 'data.options': {e}") from None
    _check_split_sizes(cfg, splits)
    if device is None:
        _device_images_wanted(cfg, splits, torch.device("cpu"))
        return splits
    return place_splits(cfg, splits, torch.device(device))


def place_splits(cfg: ExperimentConfig, splits: DataSplits, device: torch.device) -> DataSplits:
    """Where the data lives while training on ``device``; logs the path taken.

    Tensor splits are moved to ``device``; image pools become ``DeviceImageSplit``s there when
    ``data.device_data`` asks (augmented in batches on the device); the rest stays with the
    DataLoader path (``data.num_workers`` workers).
    """
    name = cfg.data.name
    if _device_images_wanted(cfg, splits, device):
        logger.info(
            f"[data] {name}: images resident on {device}, augmentation in batches there "
            f"(data.device_data={device_data_setting(cfg.data)})"
        )
        return to_device_images(splits, device)
    keys = [k for k in ("train", "val", "test", "train_eval") if isinstance(getattr(splits, k), TensorSplit)]
    if keys:
        logger.info(f"[data] {name}: in-memory tensors on {device}")
    else:
        logger.info(f"[data] {name}: DataLoader path ({cfg.data.num_workers} workers, batches copied to {device})")
    return replace(splits, **{k: getattr(splits, k).to(device) for k in keys})


def _device_images_wanted(cfg: ExperimentConfig, splits: DataSplits, device: torch.device) -> bool:
    """``data.device_data`` resolved for these splits on ``device``; ConfigError where ``on`` cannot be."""
    try:
        return use_device_images(device_data_setting(cfg.data), device, splits)
    except ValueError as e:
        raise ConfigError(f"config key 'data.device_data': {e}") from None


@dataclass(frozen=True)
class TrajectorySpec:
    arch: str
    seed: int
    dataset: str

    @property
    def name(self) -> str:
        return trajectory_name(self.arch, self.dataset, self.seed)


def trajectory_specs(cfg: ExperimentConfig) -> list[TrajectorySpec]:
    """Every (teacher arch x seed) trajectory the config asks for, in a stable order."""
    return [TrajectorySpec(a, s, cfg.data.name) for a in cfg.teacher.archs for s in seed_list(cfg.teacher)]


STAGES_CPUS = ("trajectory", "trial", "scorer")  # cluster.<stage>.cpus: what each stage's process is given


def stage_threads(cfg: ExperimentConfig, stage: str) -> int:
    """Torch intra-op threads of ``stage`` (trajectory, trial, scorer): ``threads`` if set, else
    the CPUs the stage is given (``cluster.<stage>.cpus``, at least 1), in-process (``--local``)
    and under Ray alike. Never the machine's load: thread counts can change float reductions,
    so they come from the config and are recorded (``harness/fingerprint.py``)."""
    if stage not in STAGES_CPUS:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES_CPUS)}")
    return cfg.threads if cfg.threads > 0 else max(1, int(getattr(cfg.cluster, stage).cpus))


def set_threads(cfg: ExperimentConfig, stage: str) -> int:
    """Set and return ``stage_threads(cfg, stage)``."""
    n = stage_threads(cfg, stage)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _check_split_sizes(cfg: ExperimentConfig, splits: DataSplits) -> None:
    """Every split must hold samples after carving (checked before any training)."""
    sizes = {k: len(getattr(splits, k)) for k in ("train", "val", "test")}
    empty = [k for k, n in sizes.items() if n == 0]
    if empty:
        raise ConfigError(
            f"config key 'data.val_fraction': the {'/'.join(empty)} split of {cfg.data.name} is empty "
            f"(sizes {sizes} with data.val_fraction={cfg.data.val_fraction}, data.num_samples={cfg.data.num_samples}); "
            "choose a val_fraction (or more samples) that leaves samples in every split"
        )


MIN_FREE_BYTES = 64 * 2**20  # refuse to start on a store with less room than this


def check_storage(cfg: ExperimentConfig) -> None:
    """``storage`` must be a writable folder with room to spare (checked before any compute; the
    probe file it writes is deleted at once, so a refused config leaves nothing behind). An object
    store is checked by ``check_object_storage``."""
    try:
        root = storage_location(str(cfg.storage))
    except ObjectStoreError as e:
        raise ConfigError(f"config key 'storage': {e}") from None
    if isinstance(root, ObjectPath):
        check_object_storage(root / str(cfg.name))
        return
    existing = next(p for p in [root, *root.parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"config key 'storage': {existing} is a file, not a folder; point storage at a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ConfigError(
            f"config key 'storage': cannot write in {existing} ({e.strerror or e}); "
            "choose a writable folder (storage=...)"
        ) from None
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise ConfigError(
            f"config key 'storage': {existing} is full ({free / 2**20:.1f} MiB free, at least "
            f"{MIN_FREE_BYTES // 2**20} MiB needed); free some space or choose another storage"
        )
    check_name_lengths(cfg, existing)
    for folder in (root / str(cfg.name), root / "cache"):
        check_no_links_out(folder)


def check_object_storage(root: ObjectPath) -> None:
    """Before any compute: the client is installed, the bucket is reachable and writable with the
    credentials of the standard provider chain, the server refuses a second conditional create
    of one key (an S3-compatible store that ignores ``If-None-Match`` would let two nodes record
    one run twice) and, on S3, a replace whose ``If-Match`` ETag is stale (leases). Four requests
    on S3 (two creates, the stale replace, the delete of the probe object)."""
    probe = root / f".storage-probe-{uuid.uuid4().hex}"
    fix = (
        "check that the bucket exists and that this machine's credentials may write it (AWS_* environment "
        "variables, ~/.aws, an instance role; AWS_ENDPOINT_URL for MinIO or another S3 API)"
    )
    try:
        created, again = probe.put_if_absent(b"probe"), probe.put_if_absent(b"again")
        swapped = probe.protocol in ("s3", "s3a") and probe.put_if_match(b"stale", '"0123456789abcdef0123456789abcdef"')
        probe.unlink(missing_ok=True)
    except ObjectStoreError as e:
        raise ConfigError(f"config key 'storage': {e}") from None
    except Exception as e:
        raise ConfigError(f"config key 'storage': cannot write {probe} ({type(e).__name__}: {e}); {fix}") from None
    if swapped:
        raise ConfigError(
            f"config key 'storage': the object store at {root} wrote over an object whose ETag did not match "
            "If-Match, so leases could be taken by two nodes at once; use a store (and an s3fs/botocore recent "
            "enough to send If-Match) that supports conditional writes (AWS S3, MinIO, moto)"
        )
    if not created or again:
        raise ConfigError(
            f"config key 'storage': the object store at {root} does not refuse a second conditional create "
            "of one key (If-None-Match), so a duplicate result row or two lease holders could not be prevented; "
            "use a store that supports conditional writes (AWS S3, GCS, MinIO, moto)"
        )


def check_no_links_out(folder: Path) -> None:
    """No folder link below ``folder`` (or ``folder`` itself) may lead outside it: files the
    harness creates there (logs, rows, set-aside files, checkpoints) would land outside storage.
    Links inside it (W&B's ``latest-run``) are fine. Checked when a verb starts."""
    if not os.path.lexists(folder):
        return
    inside = folder.resolve() if not folder.is_symlink() else None
    if inside is None:
        raise ConfigError(f"{folder} is a symbolic link; remove it (rm {folder}) or choose another storage/name")
    for dirpath, dirnames, _ in os.walk(folder, followlinks=False):
        for name in dirnames:
            path = Path(dirpath) / name
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                raise ConfigError(
                    f"{path} is a link to {os.readlink(path)}, outside {folder}: files written there would "
                    f"leave storage; remove it (rm {path}) and re-run"
                )


def check_name_lengths(cfg: ExperimentConfig, folder: Path) -> None:
    """``name`` and ``sweep.name`` become folder names: each must fit the file system's name limit
    (255 bytes on most), checked before any compute rather than failing at the first write."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for key, value in (("name", cfg.name), ("sweep.name", cfg.sweep.name)):
        size = len(os.fsencode(str(value))) if value else 0
        if size > limit:
            raise ConfigError(
                f"config key {key!r}: {size} bytes long, but the file system of {folder} allows "
                f"folder names of at most {limit}; choose a shorter {key}"
            )


def on_remote_cluster(cfg: ExperimentConfig) -> bool:
    """Do the stages run on a Ray cluster elsewhere (whose GPUs and data this machine may lack)?"""
    return cfg.cluster.mode == "ray" and bool(cfg.cluster.address)


def check_device(cfg: ExperimentConfig) -> None:
    """``device=cuda[:N]`` needs a visible GPU here (unless the stages run on a remote Ray cluster)."""
    name = str(cfg.device)
    if name.startswith("cuda") and not on_remote_cluster(cfg):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= n:
            raise ConfigError(
                f"config key 'device': {name!r} but {n} CUDA GPU(s) are visible here; "
                "use device=auto (the GPU when there is one) or device=cpu"
            )


def preflight(cfg: ExperimentConfig, needs_data: bool = True) -> None:
    """What can be checked before compute: storage, device, and (``needs_data``) the split sizes."""
    check_storage(cfg)
    check_device(cfg)
    if needs_data and not on_remote_cluster(cfg):
        load_splits(cfg)
