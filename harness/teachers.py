"""Teacher trajectories: train (arch, seed) runs, packs of them at once, and keep a checkpoint every few epochs.

``train_pack`` trains the trajectories of one arch that differ only in seed as one vectorized
pack (``harness/teacher_pack.py``); ``train_trajectory`` is a pack of one, the same code path.
``teacher_packs`` cuts the config's seeds into packs of ``teacher.pack_size`` (a function of the
config only). Both are pure in the sense the cluster layer needs: a config and names in, files
in the checkpoint store out. A member resumes from its own ``resume.pt`` at its last finished
epoch, and a resumed run ends with the same weights as an uninterrupted one: every epoch's
randomness (shuffling, augmentation) is derived from (seed, epoch), never carried over in memory,
so ``resume.pt`` holds no RNG state (tested bit for bit in tests/test_reproducible_artifacts.py:
killed mid-epoch, in Ray actors, augmented data; packs in tests/test_teacher_packs.py). The
packed trainer gives a pack of one the bits the plain-module trainer gave (checked on cnn1d_small
and resnet8), so stores made before packs keep their config hashes and resume.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.config import ExperimentConfig, config_hash, seed_list
from harness.config_validation import teacher_pack_size_setting
from harness.data import dataset_options
from harness.data.shapes import data_shape
from harness.experiment import TrajectorySpec, open_store
from harness.models import count_parameters, create_model
from harness.packing import PARAMS_PER_PACK
from harness.store import LOCK, Trajectory
from harness.trajectory_identity import (  # noqa: F401 (checkpoint_epochs, config_diff, trajectory_config: re-exported)
    OnEpoch,
    PackOnEpoch,
    checkpoint_epochs,
    config_diff,
    refuse_other_config,
    trajectory_config,
)

logger = logging.getLogger(__name__)
TEACHER_PACK_CAP = 8  # members per teacher pack at most (auto)


def _check_existing(cfg: ExperimentConfig, traj: Trajectory, stored: dict | None, tconf: dict, chash: str) -> None:
    """Stored work (``stored``: its manifest) must come from this config; ``restart=true``
    discards it, and an unfinished trajectory's resume state with it."""
    stale = stored is not None and stored.get("config_hash") != chash
    if stale and not cfg.restart:
        refuse_other_config(traj, "manifest", stored.get("config"), tconf)
    if stale or (cfg.restart and not (stored or {}).get("finished")):
        _discard(traj)


def _discard(traj: Trajectory) -> None:
    """Delete a trajectory's stored state (``--restart``); the folder and its lock stay."""
    removed = [p for p in traj.dir.iterdir() if p.name != LOCK]
    for p in removed:
        p.unlink()
    logger.info(f"[{traj.name}] --restart: discarded {len(removed)} stored file(s); training from scratch")


def train_trajectory(cfg: ExperimentConfig, arch: str, seed: int, on_epoch: OnEpoch | None = None) -> dict:
    """Train (or finish, or skip) one teacher trajectory, a pack of one; returns its manifest."""
    hook = None if on_epoch is None else (lambda name, epoch, metrics: on_epoch(epoch, metrics))
    return train_pack(cfg, arch, [seed], hook)[0]


def train_pack(
    cfg: ExperimentConfig, arch: str, seeds: Sequence[int], on_epoch: PackOnEpoch | None = None
) -> list[dict]:
    """Train (or finish, or skip) the trajectories of ``arch`` with ``seeds`` as one pack
    (``harness/teacher_pack.py``); returns their manifests in ``seeds`` order. The pack holds every
    member's lock (taken in name order); finished members are skipped."""
    from harness.teacher_pack import train_members

    store = open_store(cfg)
    specs = [TrajectorySpec(arch, int(s), cfg.data.name) for s in seeds]
    trajs = {spec.name: store.trajectory(spec.name) for spec in specs}
    done = {spec.name: m for spec in specs if (m := _finished_manifest(cfg, spec, trajs[spec.name])) is not None}
    if len(done) == len(specs):
        return [done[spec.name] for spec in specs]
    with contextlib.ExitStack() as locks:
        for name in sorted(trajs):  # one writer per trajectory; a second process waits here
            locks.enter_context(trajs[name].lock())
        todo = []
        for spec in specs:
            traj = trajs[spec.name]
            traj.remove_stale_temps()
            tconf = trajectory_config(cfg, spec)
            stored = traj.manifest_or_none()  # (written meanwhile by the one we waited for?)
            _check_existing(cfg, traj, stored, tconf, config_hash(tconf))
            manifest = _finished_manifest(cfg, spec, traj)
            if manifest is None:
                todo.append(spec)
            else:
                done[spec.name] = manifest
        if todo:
            pack = {"size": len(specs), "seeds": [spec.seed for spec in specs]}
            done.update(train_members(cfg, arch, todo, pack, on_epoch))
    return [done[spec.name] for spec in specs]


def _finished_manifest(cfg: ExperimentConfig, spec: TrajectorySpec, traj: Trajectory) -> dict | None:
    """The stored manifest if the trajectory is finished with this config, else None."""
    stored = traj.manifest_or_none()
    if stored and stored.get("finished") and stored.get("config_hash") == config_hash(trajectory_config(cfg, spec)):
        logger.info(f"[{spec.name}] finished already; skipping")
        return stored
    return None


@dataclass(frozen=True)
class TeacherPackSpec:
    """Trajectories of one arch trained as one pack: its seeds, in ``teacher.seeds`` order."""

    arch: str
    seeds: tuple[int, ...]

    def specs(self, dataset: str) -> list[TrajectorySpec]:
        return [TrajectorySpec(self.arch, s, dataset) for s in self.seeds]


def teacher_packs(cfg: ExperimentConfig) -> list[TeacherPackSpec]:
    """The config's teacher packs: per arch, ``teacher.seeds`` cut into consecutive chunks of
    ``teacher_pack_size``. A function of the config only (never of free slots or the cluster),
    so re-running a config packs every trajectory as before."""
    seeds = [int(s) for s in seed_list(cfg.teacher)]
    packs = []
    for arch in cfg.teacher.archs:
        size = teacher_pack_size(cfg, arch)
        packs += [TeacherPackSpec(arch, tuple(seeds[i : i + size])) for i in range(0, len(seeds), size)]
    return packs


def teacher_pack_size(cfg: ExperimentConfig, arch: str) -> int:
    """``teacher.pack_size`` resolved for ``arch``. ``auto``: on a CPU 1 for models with
    convolutions (a CPU pack runs its convolutions member by member: no speed to gain), else as
    many members as the parameter budget ``PARAMS_PER_PACK`` of the device holds (at most
    ``TEACHER_PACK_CAP``); 1 when the data set's shape is not known without reading it."""
    fixed = teacher_pack_size_setting(cfg.teacher)
    if fixed is not None:
        return fixed
    options = dict(cfg.data.options)
    if "num_samples" in dataset_options(cfg.data.name):
        options.setdefault("num_samples", cfg.data.num_samples)
    shape = data_shape(cfg.data.name, options)
    if shape.input_shape is None or shape.num_classes is None:
        return 1
    with torch.device("meta"):
        model = create_model(arch, num_classes=shape.num_classes, input_shape=shape.input_shape)
    cuda = _packs_on_cuda(cfg)
    if not cuda and any(isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)) for m in model.modules()):
        return 1
    budget = PARAMS_PER_PACK["cuda" if cuda else "cpu"]
    return max(1, min(TEACHER_PACK_CAP, budget // max(count_parameters(model), 1)))


def _packs_on_cuda(cfg: ExperimentConfig) -> bool:
    """Is the config's device a GPU (``auto``: a GPU is visible where the packs are formed)?"""
    if cfg.device == "auto":
        return torch.cuda.is_available()
    return torch.device(cfg.device).type == "cuda"


def run_teachers(cfg: ExperimentConfig) -> list[dict]:
    """Train every trajectory of the config in this process, pack by pack (manifests in
    ``trajectory_specs`` order)."""
    packs = teacher_packs(cfg)
    logger.info(
        f"[teachers] {sum(len(p.seeds) for p in packs)} trajectories in {len(packs)} pack(s) "
        f"into {open_store(cfg).trajectories_dir}"
    )
    return [m for p in packs for m in train_pack(cfg, p.arch, p.seeds)]
