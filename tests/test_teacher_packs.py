"""Teacher packs (harness/teacher_pack.py): a member's checkpoints are bit-identical however it
was packed (CPU), resumed, or skipped; BatchNorm per member; packs are a function of the config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.config import ConfigError
from harness.config_loading import load_config
from harness.experiment import open_store
from harness.teachers import TeacherPackSpec, teacher_packs, train_pack, train_trajectory
from tests.helpers import QUICKSTART

SEEDS = [0, 1, 2]
MNIST = {"data.num_samples": 600, "teacher.epochs": 3, "teacher.checkpoint_every": 1}
IMAGES = {  # synthetic CIFAR (random crop + flip), a BatchNorm ResNet
    "teacher.archs": "[resnet8]",
    "teacher.epochs": 2,
    "teacher.checkpoint_every": 1,
    "data.name": "synthetic_cifar10",
    "data.num_samples": 96,
    "data.options.num_test": 32,
    "data.batch_size": 16,
}


def _cfg(storage: Path, **extra: object):
    base = {"storage": str(storage), "teacher.seeds": "[0,1,2]", "tracking.mode": "disabled", "threads": 1}
    return load_config(QUICKSTART, [f"{k}={v}" for k, v in {**base, **extra}.items()])


def _stored(cfg, arch: str, seed: int) -> tuple[list[str], dict]:
    """A trajectory's checkpoint sha256s and its last resume state."""
    traj = open_store(cfg).trajectory(f"{arch}-{cfg.data.name}-s{seed}")
    return [c["sha256"] for c in traj.checkpoints()], traj.load_resume()


def _same_resume(a: dict, b: dict) -> bool:
    moms = [(a["optimizer"]["state"][i], b["optimizer"]["state"][i]) for i in a["optimizer"]["state"]]
    return (
        a["model"].keys() == b["model"].keys()
        and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        and all(torch.equal(x["momentum_buffer"], y["momentum_buffer"]) for x, y in moms)
        and a["scheduler"] == b["scheduler"]
    )


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """Each mnist1d seed trained alone (a pack of one)."""
    cfg = _cfg(tmp_path_factory.mktemp("alone"), **MNIST)
    for seed in SEEDS:
        train_trajectory(cfg, "cnn1d_small", seed)
    return cfg


def test_pack_of_three_is_bit_identical_to_each_alone(alone, tmp_path):
    cfg = _cfg(tmp_path, **MNIST)
    manifests = train_pack(cfg, "cnn1d_small", SEEDS)
    for i, (seed, manifest) in enumerate(zip(SEEDS, manifests, strict=True)):
        shas, state = _stored(cfg, "cnn1d_small", seed)
        lone_shas, lone_state = _stored(alone, "cnn1d_small", seed)
        assert len(shas) == 3 and shas == lone_shas, f"seed {seed}: checkpoints differ from its lone run"
        assert _same_resume(state, lone_state)
        assert manifest["pack"] == {"size": 3, "seeds": SEEDS, "index": i}
    assert len({tuple(_stored(cfg, "cnn1d_small", s)[0]) for s in SEEDS}) == 3  # members differ


def test_resumed_pack_with_a_finished_member_is_bit_identical(alone, tmp_path, logs):
    """Seed 0 finished, seed 1 killed after epoch 1, seed 2 never started: the pack skips 0 and
    trains 1 and 2 in sub-packs by start epoch, with the bits of uninterrupted lone runs."""
    cfg = _cfg(tmp_path, **MNIST)
    train_trajectory(cfg, "cnn1d_small", 0)

    def crash(epoch, metrics):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_trajectory(cfg, "cnn1d_small", 1, on_epoch=crash)
    logs.clear()
    train_pack(cfg, "cnn1d_small", SEEDS)
    assert "[cnn1d_small-mnist1d-s0] finished already; skipping" in logs.messages
    assert "[cnn1d_small-mnist1d-s1] resuming after epoch 1/3" in logs.messages
    for seed in SEEDS:
        assert _stored(cfg, "cnn1d_small", seed)[0] == _stored(alone, "cnn1d_small", seed)[0], f"seed {seed}"


def test_images_pack_keeps_batchnorm_per_member_and_the_bits(tmp_path):
    """resnet8 with augmentation: a pack of 2 equals each seed alone, running statistics included."""
    lone, packed = _cfg(tmp_path / "a", **IMAGES), _cfg(tmp_path / "p", **IMAGES)
    for seed in (0, 1):
        train_trajectory(lone, "resnet8", seed)
    train_pack(packed, "resnet8", [0, 1])
    stats = []
    for seed in (0, 1):
        assert _stored(packed, "resnet8", seed)[0] == _stored(lone, "resnet8", seed)[0]
        traj = open_store(packed).trajectory(f"resnet8-synthetic_cifar10-s{seed}")
        stats.append(traj.load_checkpoint(2)["model"]["stem.1.running_mean"])
    assert not torch.equal(stats[0], stats[1])


def test_packs_are_a_function_of_the_config(tmp_path):
    fixed = _cfg(tmp_path, **{"teacher.pack_size": 2})
    assert teacher_packs(fixed) == [TeacherPackSpec("cnn1d_small", (0, 1)), TeacherPackSpec("cnn1d_small", (2,))]
    assert teacher_packs(fixed) == teacher_packs(_cfg(tmp_path, **{"teacher.pack_size": 2}))
    conv = _cfg(tmp_path, device="cpu")  # auto: convolutions on a CPU gain nothing from a pack
    assert [p.seeds for p in teacher_packs(conv)] == [(0,), (1,), (2,)]
    mlp = _cfg(tmp_path, device="cpu", **{"teacher.archs": "[mlp_small]"})
    assert teacher_packs(mlp) == [TeacherPackSpec("mlp_small", (0, 1, 2))]


@pytest.mark.parametrize("value", ["0", "two", "-1", "513"])
def test_pack_size_is_validated(tmp_path, value):
    with pytest.raises(ConfigError, match="teacher.pack_size") as err:
        _cfg(tmp_path, **{"teacher.pack_size": value})
    assert "\n" not in str(err.value)
