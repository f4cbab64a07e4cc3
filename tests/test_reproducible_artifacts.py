"""Teacher trajectories and scores files are bit-identical however they were computed (issue 19).

Trajectories: trained in one go == SIGKILLed mid-epoch in a real subprocess and resumed (in
another process, from ``resume.pt``) == trained in a Ray actor that is killed and restarted; on
mnist1d, on augmented synthetic CIFAR images (per-item transforms in the DataLoader, and the
batched device path) and on a data set augmented with numpy's global RNG. Every tensor of
every checkpoint and of the final resume state is compared with ``torch.equal``, the
manifests' numbers exactly (only timings and fingerprints left out).

Scores files (given ``scoring.seed``): scored twice == scored in a subprocess killed mid-way and
resumed == scored in a Ray scorer actor, with every estimate, replicate, pick and the proxy
selector's students compared exactly (only ``timings``, ``environment``, ``written_at``,
``digest`` and the proxy's seconds left out).

The subprocesses are instrumented only to know *when* to kill: a wrapper around the batch
iterator (or the recon decoders' epoch) touches a marker file and waits, and the test SIGKILLs
the process when the marker appears. Under Ray, a worker setup hook makes the trajectory actor
SIGKILL itself one step into epoch 6 (once).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from harness.config import ExperimentConfig
from harness.config_loading import load_config
from harness.data import DataSplits
from harness.data.catalog import DATASETS
from harness.experiment import open_store
from harness.scoring.base import TensorConvSource
from harness.scoring.recon_training import ReconSettings, train_decoders
from harness.scoring.runner import run_scoring
from harness.scoring.scores_file import scores_path
from harness.store import Trajectory
from harness.teachers import run_teachers, train_trajectory
from tests.helpers import QUICKSTART, ROOT, tiny_overrides, wait_for

S0, S1 = "cnn1d_small-mnist1d-s0", "cnn1d_small-mnist1d-s1"
TRAJECTORY = {
    "teacher.epochs": 6,
    "teacher.checkpoint_every": 2,
    "data.num_samples": 2000,
    "data.batch_size": 64,
}
SCORING = {  # every estimator (recon too: the kill lands in its training), recon shrunk, plus the proxy selector
    "scoring.estimators": "[ridge,recon,accuracy,ce_bound,kde,binning]",
    "scoring.ridge.train_samples": 150,
    "scoring.num_samples": 200,
    "scoring.recon.train_samples": 300,
    "scoring.recon.seeds": 2,
    "scoring.recon.max_epochs": 6,
    "scoring.recon.patience": 2,
    "scoring.proxy.selectors": "[proxy]",
    "scoring.proxy.epochs": 1,
}
IMAGES = {  # synthetic CIFAR (random crop + flip), a BatchNorm ResNet
    "teacher.archs": "[resnet8]",
    "teacher.seeds": "[0]",
    "teacher.epochs": 3,
    "teacher.checkpoint_every": 1,
    "data.name": "synthetic_cifar10",
    "data.num_samples": 160,
    "data.options.num_test": 40,
    "data.batch_size": 16,
}
# Keys whose values are timings or fingerprints of where a number was computed, not the numbers.
NOT_COMPARED = frozenset(
    {"wall_time_s", "seconds", "setup_s", "timings", "cost_s", "written_at", "digest", "environment", "environments"}
)

KILLED_TRAJECTORY = """
import sys, time
from pathlib import Path
import harness.teacher_pack as teacher_pack
import harness.teachers as teachers
from harness.config_loading import load_config

config, marker, kill_epoch, arch, seed, *overrides = sys.argv[1:]
real = teacher_pack.train_packed_epoch

def train_epoch(model, batches, *args, progress=None, **kwargs):
    epoch = int(progress.rsplit(" ", 1)[1])  # "[name] epoch 6"

    def batches_of_this_epoch():
        for i, batch in enumerate(batches):
            if epoch == int(kill_epoch) and i == 1:  # one step of this epoch is done: wait to be killed
                Path(marker).touch()
                time.sleep(600)
            yield batch

    return real(model, batches_of_this_epoch(), *args, progress=progress, **kwargs)

teacher_pack.train_packed_epoch = train_epoch
teachers.train_trajectory(load_config(config, overrides), arch, int(seed))
"""

KILLED_SCORING = """
import sys, time
from pathlib import Path
import harness.scoring.recon_training as recon
import harness.scoring.runner as runner
from harness.config_loading import load_config

config, marker, victim, *overrides = sys.argv[1:]
scoring, real_score, real_epoch = [], runner.score_checkpoints, recon._train_epoch

def score_checkpoints(cfg, plan, *args, **kwargs):
    scoring.append(plan.traj.name)
    return real_score(cfg, plan, *args, **kwargs)

def train_epoch(*args, **kwargs):
    real_epoch(*args, **kwargs)
    if scoring[-1] == victim:  # an epoch of its recon decoders trained: wait to be killed
        Path(marker).touch()
        time.sleep(600)

runner.score_checkpoints, recon._train_epoch = score_checkpoints, train_epoch
runner.run_scoring(load_config(config, overrides))
"""


def _overrides(storage: Path, **extra: Any) -> list[str]:
    return tiny_overrides(storage, **{**TRAJECTORY, **SCORING, **extra})


def _cfg(storage: Path, **extra: Any) -> ExperimentConfig:
    return load_config(QUICKSTART, _overrides(storage, **extra))


def _storage(folder: Path, reference: ExperimentConfig) -> Path:
    """A storage folder under ``folder`` that starts with the reference's data cache (hard links:
    the generated data sets are a function of their seed, and generating them takes seconds)."""
    storage = folder / "runs"
    shutil.copytree(open_store(reference).cache_dir, storage / "cache", copy_function=os.link)
    return storage


def _kill_when_marked(argv: list[str], marker: Path, meanwhile: Callable[[], Any] | None = None) -> None:
    """Run ``python -c argv...`` (and ``meanwhile()`` here) and SIGKILL it once it touched ``marker``."""
    log = marker.with_suffix(".stderr")
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", *argv], cwd=ROOT, stderr=err)
    try:
        if meanwhile is not None:
            meanwhile()
        wait_for(lambda: marker.exists() or proc.poll() is not None, timeout=120, every=0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"exited {proc.returncode} before the kill: {log.read_text()[-3000:]}"


def _tensors(obj: Any, path: str = "") -> dict[str, torch.Tensor]:
    """Every tensor inside nested dicts / lists, by path."""
    if isinstance(obj, torch.Tensor):
        return {path: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else []
    return {p: t for k, v in items for p, t in _tensors(v, f"{path}/{k}").items()}


def _numbers(obj: Any) -> str:
    """``obj`` without the ``NOT_COMPARED`` keys, as canonical JSON (exact floats; NaN equals NaN)."""

    def strip(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in NOT_COMPARED}
        return [strip(v) for v in o] if isinstance(o, list) else o

    return json.dumps(strip(obj), sort_keys=True)


def assert_same_trajectory(a: Trajectory, b: Trajectory) -> None:
    """Checkpoint files byte for byte, every tensor of every checkpoint and of the final resume
    state (weights, momentum, schedule) bit for bit, the manifests' numbers exactly."""
    ma, mb = a.manifest(), b.manifest()
    assert ma["finished"] and mb["finished"]
    assert _numbers(ma) == _numbers(mb)  # metrics, history, checkpoint sha256s
    for entry in ma["checkpoints"]:
        wa, wb = a.load_checkpoint(entry["epoch"])["model"], b.load_checkpoint(entry["epoch"])["model"]
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), entry["epoch"]
    ra, rb = _tensors(a.load_resume()), _tensors(b.load_resume())
    assert ra.keys() == rb.keys() and any("optimizer" in k for k in ra)
    assert all(torch.equal(ra[k], rb[k]) for k in ra)


def _scores(cfg: ExperimentConfig, name: str) -> str:
    return _numbers(json.loads(scores_path(open_store(cfg), name).read_text()))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> ExperimentConfig:
    """Two mnist1d trajectories trained in one go in this process, and their scores files."""
    cfg = _cfg(tmp_path_factory.mktemp("reference") / "runs")
    run_teachers(cfg)
    run_scoring(cfg)
    return cfg


# ----------------------------------------------------------------------------- trajectories


def _killed_and_resumed(
    cfg: ExperimentConfig,
    overrides: list[str],
    kill_epoch: int,
    tmp_path: Path,
    meanwhile: Callable[[], Any] | None = None,
) -> Trajectory:
    """Train the config's first trajectory in a subprocess (its ``overrides``), SIGKILL it one step
    into ``kill_epoch`` (running ``meanwhile()`` here), check what it left, and resume it here."""
    arch, seed = cfg.teacher.archs[0], cfg.teacher.seeds[0]
    marker = tmp_path / f"in-epoch-{kill_epoch}"
    _kill_when_marked(
        [KILLED_TRAJECTORY, str(QUICKSTART), str(marker), str(kill_epoch), arch, str(seed), *overrides],
        marker,
        meanwhile,
    )
    traj = open_store(cfg).trajectory(f"{arch}-{cfg.data.name}-s{seed}")
    every = cfg.teacher.checkpoint_every
    assert traj.load_resume()["epoch"] == kill_epoch - 1  # died inside kill_epoch
    assert [c["epoch"] for c in traj.checkpoints()] == list(range(every, kill_epoch, every))
    assert not traj.manifest()["finished"]
    train_trajectory(cfg, arch, seed)
    assert [h["epoch"] for h in traj.manifest()["history"]] == list(range(1, cfg.teacher.epochs + 1))
    return traj


def test_trajectory_killed_mid_epoch_and_resumed_is_bit_identical(reference, tmp_path):
    """Killed inside epoch 6 (checkpoints 2 and 4 saved, resume.pt at 5), resumed: the same bits."""
    storage = _storage(tmp_path, reference)
    cfg = _cfg(storage)
    traj = _killed_and_resumed(cfg, _overrides(storage), 6, tmp_path)
    assert_same_trajectory(open_store(reference).trajectory(S0), traj)


@pytest.mark.parametrize("device_data", ["off", "on"])
def test_augmented_trajectory_killed_and_resumed_is_bit_identical(device_data, tmp_path):
    """Random crops and flips, per item in the DataLoader (off) or batched (on), BatchNorm:
    killed inside epoch 3 (checkpoints 1 and 2 saved) and resumed == trained in one go."""
    extra = {**IMAGES, "data.device_data": device_data}
    once = load_config(QUICKSTART, tiny_overrides(tmp_path / "once", **extra))
    overrides = tiny_overrides(tmp_path / "killed", **extra)
    cfg = load_config(QUICKSTART, overrides)
    traj = _killed_and_resumed(cfg, overrides, 3, tmp_path, meanwhile=lambda: run_teachers(once))
    assert_same_trajectory(open_store(once).trajectory("resnet8-synthetic_cifar10-s0"), traj)


class _NumpyJitter(Dataset):
    """Items of ``base`` plus noise drawn from the global ``numpy.random`` (as hand-written and
    some third-party augmentations do; the loader forks only torch's and Python's RNG per item)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[i]
        return x + torch.from_numpy(np.random.normal(0.0, 0.1, tuple(x.shape)).astype(np.float32)), y


def _jittered_mnist1d(*, num_samples: int = 16000, **common: Any) -> DataSplits:
    """mnist1d whose training split is augmented with numpy noise (a registered data set)."""
    splits = DATASETS.get("mnist1d")(num_samples=num_samples, **common)
    return dataclasses.replace(splits, train=_NumpyJitter(splits.train), augmented=True)


def test_resume_replays_numpy_and_python_randomness(reference, tmp_path, monkeypatch):
    """Every epoch starts from RNG states derived from (seed, epoch), numpy's and Python's too: a
    run that crashed after epoch 2 and resumed in the same process (whose RNGs have moved on)
    draws the same augmentation noise as one trained in one go."""
    monkeypatch.setitem(DATASETS._items, "jittered_mnist1d", _jittered_mnist1d)
    extra = {"data.name": "jittered_mnist1d", "teacher.seeds": "[0]", "teacher.epochs": 4}
    once = _cfg(_storage(tmp_path / "once", reference), **extra)
    run_teachers(once)
    cfg = _cfg(_storage(tmp_path / "crashed", reference), **extra)

    def crash_after_epoch_2(epoch: int, metrics: dict) -> None:
        if epoch == 2:
            raise RuntimeError("crashed after epoch 2")

    with pytest.raises(RuntimeError, match="crashed after epoch 2"):
        train_trajectory(cfg, "cnn1d_small", 0, on_epoch=crash_after_epoch_2)
    train_trajectory(cfg, "cnn1d_small", 0)
    name = "cnn1d_small-jittered_mnist1d-s0"
    assert_same_trajectory(open_store(once).trajectory(name), open_store(cfg).trajectory(name))


# ----------------------------------------------------------------------------- scores files


def test_scores_twice_and_killed_mid_way_and_resumed_are_identical(reference, tmp_path):
    """Scoring copies of the reference trajectories from scratch: in a subprocess SIGKILLed while
    it trains the second one's recon decoders (the first one's file written), then resumed here
    (the first trajectory's results reused from its file, the second scored anew, as the
    reference was: twice in this process). The reference's files, but for timings."""
    storage = _storage(tmp_path, reference)
    cfg = _cfg(storage)
    shutil.copytree(open_store(reference).trajectories_dir, open_store(cfg).trajectories_dir)
    marker = tmp_path / "scoring-s1"
    _kill_when_marked([KILLED_SCORING, str(QUICKSTART), str(marker), S1, *_overrides(storage)], marker)
    assert scores_path(open_store(cfg), S0).is_file() and not scores_path(open_store(cfg), S1).exists()
    summary = run_scoring(cfg)
    assert summary[S0]["timings"]["checkpoints_reused"] == 3 and summary[S1]["timings"]["checkpoints_scored"] == 3
    for name in (S0, S1):
        assert _scores(cfg, name) == _scores(reference, name), name


def test_recon_decoders_record_their_threads_whatever_the_configured_ones():
    """Small CPU decoders train on one thread whether the scorer has 1 or 2 (same bits), say so
    in every estimate, and leave the caller's thread count as it was."""
    gen = torch.Generator().manual_seed(0)
    x, conv = torch.randn(40, 1, 8, generator=gen), TensorConvSource(torch.randn(2, 40, 3, 4, generator=gen))
    settings = ReconSettings(max_epochs=3, seeds=2, batch_size=8, train_samples=30)
    before, out = torch.get_num_threads(), {}
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out[n] = train_decoders(conv, x, torch.arange(30), torch.arange(30, 40), settings)
            assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)
    assert [e.values["threads"] for e in out[2]] == [1.0, 1.0]
    assert [(e.values, e.replicates) for e in out[1]] == [(e.values, e.replicates) for e in out[2]]


# ----------------------------------------------------------------------------- Ray actors


def _kill_once_in_epoch_6(marker: Path):
    """A Ray worker setup hook: the first trajectory actor to reach epoch 6 SIGKILLs itself one
    step into it (Ray restarts the actor, which resumes from ``resume.pt``)."""

    def hook() -> None:
        import os

        import harness.teacher_pack as teacher_pack

        real = teacher_pack.train_packed_epoch

        def train_epoch(model, batches, *args, progress=None, **kwargs):
            def batches_of_this_epoch():
                for i, batch in enumerate(batches):
                    if progress.endswith(" epoch 6") and i == 1 and not marker.exists():
                        marker.touch()
                        os.kill(os.getpid(), signal.SIGKILL)
                    yield batch

            return real(model, batches_of_this_epoch(), *args, progress=progress, **kwargs)

        teacher_pack.train_packed_epoch = train_epoch

    return hook


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray = pytest.importorskip("ray")
    marker = tmp_path_factory.mktemp("ray") / "killed-in-epoch-6"
    hook = _kill_once_in_epoch_6(marker)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"worker_process_setup_hook": hook},
    )
    yield ray, marker
    ray.shutdown()


@pytest.mark.timeout(300)
def test_ray_trajectory_actor_killed_and_scorer_actor_give_the_same_bits(reference, cluster, tmp_path):
    """A trajectory actor SIGKILLed inside epoch 6 (Ray restarts it; it resumes) and the scorer
    actor give the reference's checkpoints and scores file."""
    from harness.cluster.connection import ClusterSession
    from harness.cluster.scoring import Scorer
    from harness.cluster.teachers import TrajectoryRunner

    _, marker = cluster
    session = ClusterSession(_cfg(_storage(tmp_path, reference), **{"teacher.seeds": "[0]"}))
    runner = TrajectoryRunner(session).start()
    runner.wait()
    attempts = runner.progress()[S0]["attempts"]
    assert marker.exists() and [a["first_epoch"] for a in attempts] == [1, 6], attempts  # resumed in epoch 6
    assert_same_trajectory(open_store(reference).trajectory(S0), open_store(session.cfg).trajectory(S0))
    scorer = Scorer(session)
    try:
        scorer.submit(S0)
        scorer.wait()
    finally:
        scorer.close()
    assert _scores(session.cfg, S0) == _scores(reference, S0)
