"""What a teacher trajectory *is*: the config it is trained from (its hash guards the store
against mixing configs), the epochs that get a checkpoint, and the refusal of stored work made
with another config. Shared by ``harness/teachers.py`` (packs, skipping, locks) and
``harness/teacher_pack.py`` (the training loop), which import it and not each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.config import ExperimentConfig, to_dict
from harness.experiment import TrajectorySpec
from harness.store import StoreError, Trajectory

OnEpoch = Callable[[int, dict], None]  # (epoch, metrics) of one trajectory
PackOnEpoch = Callable[[str, int, dict], None]  # (trajectory name, epoch, metrics) of a pack's member


# Execution choices, not part of what a trajectory is: where the files are, how data reach the
# device (device_data draws other augmentation numbers from the same distribution, as precision
# gives other rounding), so a store made before these keys existed keeps its hashes.
_NOT_HASHED = ("root", "num_workers", "eval_batch_size", "download", "device_data")


def trajectory_config(cfg: ExperimentConfig, spec: TrajectorySpec) -> dict:
    """What determines a trajectory's weights; its hash guards against mixing configs."""
    return {
        "arch": spec.arch,
        "seed": spec.seed,
        "data": {k: v for k, v in to_dict(cfg.data).items() if k not in _NOT_HASHED},
        # (pack_size: how it is trained, not what; a member's bits do not depend on it on a CPU,
        # and on a GPU its pack is in its manifest and a resume in another pack is refused)
        "teacher": {k: v for k, v in to_dict(cfg.teacher).items() if k not in ("archs", "seeds", "pack_size")},
    }


def checkpoint_epochs(epochs: int, every: int) -> list[int]:
    """Epochs that get a checkpoint: every ``every`` epochs plus the final one."""
    return sorted(set(range(every, epochs + 1, every)) | {epochs})


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs between two plain configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        return [d for k in keys for d in config_diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def refuse_other_config(traj: Trajectory, what: str, stored: dict | None, tconf: dict) -> None:
    diff = config_diff(stored or {}, tconf)
    shown = "; ".join(diff[:6]) + ("; ..." if len(diff) > 6 else "")
    raise StoreError(
        f"trajectory {traj.name} in {traj.dir}: its {what} was made with another config ({shown or 'unknown keys'}); "
        "it is not used. Re-run with --restart to discard it and train this trajectory from scratch, "
        "or use another experiment name"
    )
