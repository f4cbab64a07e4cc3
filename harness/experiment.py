"""Experiment-level helpers every stage shares: the store, the data splits, the trajectories."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from harness.config import ConfigError, ExperimentConfig
from harness.data import DataSplits, TensorSplit, build_splits, dataset_options
from harness.store import CheckpointStore, trajectory_name


def open_store(cfg: ExperimentConfig) -> CheckpointStore:
    return CheckpointStore(cfg.storage, cfg.name)


def load_splits(cfg: ExperimentConfig, device: torch.device | str | None = None) -> DataSplits:
    """The experiment's train/val/test splits (same for every teacher and student).

    With ``device``, in-memory splits are moved there once (GPU-resident data: no host-to-device
    copy per batch).
    """
    options = dict(cfg.data.options)
    if "num_samples" in dataset_options(cfg.data.name):
        options.setdefault("num_samples", cfg.data.num_samples)
    try:
        splits = build_splits(
            cfg.data.name,
            root=cfg.data.root,
            storage_dir=open_store(cfg).cache_dir,
            seed=cfg.data.seed,
            val_fraction=cfg.data.val_fraction,
            augment=cfg.data.augment,
            download=cfg.data.download,
            **options,
        )
    except TypeError as e:
        raise ConfigError(f"config key 'data.options': {e}") from None
    if device is None:
        return splits
    moved = {k: getattr(splits, k).to(device) for k in ("train", "val", "test", "train_eval") if isinstance(getattr(splits, k), TensorSplit)}
    return replace(splits, **moved)


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
    return [TrajectorySpec(a, s, cfg.data.name) for a in cfg.teacher.archs for s in cfg.teacher.seeds]


def set_threads(cfg: ExperimentConfig) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
