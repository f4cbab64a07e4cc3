"""The whole harness on ``storage=s3://...``, against a real S3 API server on localhost (moto's,
over HTTP, with the s3fs/botocore client a cluster uses; ``tests/s3_server.py``):

- a trajectory SIGKILLed mid-epoch on s3 resumes (after its dead writer's lease expires) to the
  same bits as one trained in one go on a local folder;
- two processes told to train one trajectory at once: one trains, the other waits for its lease;
- a corrupted object (checkpoint, manifest) is refused by name, never used;
- a storage that is unreachable or ignores conditional creates is refused before compute;
- the quickstart pipeline on a simulated 3-node Ray cluster whose nodes share no folder (each has
  its own node cache): the leaderboard equals the one of the same config on a local folder.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import ConfigError
from harness.config_loading import load_config
from harness.experiment import check_storage, open_store
from harness.objects import ObjectPath, storage_location
from harness.store import StoreError
from harness.teachers import train_trajectory
from tests.helpers import QUICKSTART, ROOT, tiny_overrides, wait_for
from tests.test_reproducible_artifacts import S0, TRAJECTORY, _killed_and_resumed, assert_same_trajectory

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def node_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's node-local folders (data, checkpoint cache), and 3-s leases (subprocesses too)."""
    monkeypatch.setenv("CKD_NODE_CACHE", str(tmp_path / "node"))
    monkeypatch.setenv("CKD_LEASE_TTL_S", "3")
    return tmp_path / "node"


def _overrides(storage: str | Path, **extra) -> list[str]:
    return tiny_overrides(storage, **{**TRAJECTORY, **extra})  # type: ignore[arg-type]


def test_sigkilled_trajectory_on_s3_resumes_to_the_bits_of_one_trained_locally(s3_storage, tmp_path):
    overrides = _overrides(s3_storage)
    cfg = load_config(QUICKSTART, overrides)
    assert isinstance(open_store(cfg).root, ObjectPath)
    traj = _killed_and_resumed(cfg, overrides, 6, tmp_path)  # waits out the dead writer's 3-s lease
    local = load_config(QUICKSTART, _overrides(tmp_path / "local"))
    train_trajectory(local, "cnn1d_small", 0)
    assert_same_trajectory(open_store(local).trajectory(S0), traj)


PAUSED_TRAJECTORY = """
import sys, time
from pathlib import Path
import harness.teacher_pack as teacher_pack
from harness.cli import main

go, *argv = sys.argv[1:]
real = teacher_pack.train_packed_epoch

def train_epoch(model, batches, *args, progress=None, **kwargs):
    if progress.endswith(" epoch 2"):  # holding the lease: wait until the other writer is seen waiting
        while not Path(go).exists():
            time.sleep(0.05)
    return real(model, batches, *args, progress=progress, **kwargs)

teacher_pack.train_packed_epoch = train_epoch
sys.exit(main(argv))
"""


def _teachers(storage: str, log: Path, go: Path | None = None) -> subprocess.Popen:
    argv = ["teachers", str(QUICKSTART), *_overrides(storage), "teacher.seeds=[0]", "cluster.mode=local"]
    program = ["-c", PAUSED_TRAJECTORY, str(go)] if go else ["-m", "harness.cli"]
    return subprocess.Popen(
        [sys.executable, *program, *argv], cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env=os.environ
    )


def test_two_writers_of_one_trajectory_never_both_train(s3_storage, tmp_path):
    """The first writer holds the trajectory's lease (paused in epoch 2) until the second is seen
    waiting for it; then it finishes, and the second finds the trajectory finished."""
    go, logs = tmp_path / "go", [tmp_path / "first.log", tmp_path / "second.log"]
    first = _teachers(s3_storage, logs[0], go)
    lease = storage_location(s3_storage) / "quickstart" / "trajectories" / S0 / ".lock"
    wait_for(lambda: lease.is_file() or first.poll() is not None, timeout=120)
    second = _teachers(s3_storage, logs[1])
    wait_for(lambda: "is being trained by pid" in logs[1].read_text() or second.poll() is not None, timeout=120)
    go.touch()
    assert [p.wait(timeout=240) for p in (first, second)] == [0, 0], [log.read_text()[-3000:] for log in logs]
    text = [log.read_text() for log in logs]
    assert f"is being trained by pid {first.pid} on" in text[1]
    assert [t.count("epoch   6/6") for t in text] == [1, 0], text  # the second trained no epoch
    history = open_store(load_config(QUICKSTART, _overrides(s3_storage))).trajectory(S0).manifest()["history"]
    assert [h["epoch"] for h in history] == list(range(1, 7))


def test_corrupted_objects_are_refused_by_name(s3_server, s3_storage, tmp_path, node_cache):
    cfg = load_config(QUICKSTART, _overrides(s3_storage, **{"teacher.epochs": 2}))
    train_trajectory(cfg, "cnn1d_small", 0)
    traj = open_store(cfg).trajectory(S0)
    ckpt = traj.checkpoint_path(2)
    assert isinstance(ckpt, ObjectPath)
    bucket, key = ckpt.key.split("/", 1)
    good = traj.load_checkpoint(2)["model"]
    body = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=body[:-10] + b"x" * 10)  # another writer's damage
    cached = traj.load_checkpoint(2)["model"]  # this node's copy was verified by its sha256: still the good one
    assert all((cached[k] == good[k]).all() for k in good)
    for entry in (node_cache / "objects").rglob("*"):
        if entry.is_file():
            entry.unlink()
    with pytest.raises(StoreError, match=r"ckpt-e0002\.pt does not match its sha256 in the manifest"):
        traj.load_checkpoint(2)
    s3_server.client().put_object(Bucket=bucket, Key=traj.manifest_path.key.split("/", 1)[1], Body=b"{not json")
    with pytest.raises(StoreError, match=r"manifest\.json is not valid JSON"):
        traj.manifest()
    traj.manifest_path.put(b"")  # an empty object (a ranged GET of it is answered 416)
    with pytest.raises(StoreError, match=r"manifest\.json is not valid JSON"):
        traj.manifest()


def test_unreachable_or_unconditional_storage_is_refused_before_compute(s3_server, s3_storage, monkeypatch):
    cfg = load_config(QUICKSTART, tiny_overrides(Path("unused")))
    cfg.storage = "s3://no-such-bucket-here/runs"
    with pytest.raises(ConfigError, match=r"config key 'storage': cannot write s3://no-such-bucket-here/runs/.*bucket"):
        check_storage(cfg)
    cfg.storage = s3_storage
    check_storage(cfg)  # reachable, and the server refuses a second conditional create
    blind = lambda self, data, *etag: ObjectPath.put(self, data) or True  # noqa: E731 (a server ignoring the condition)
    with monkeypatch.context() as m:
        m.setattr(ObjectPath, "put_if_match", blind)
        with pytest.raises(ConfigError, match=r"wrote over an object whose ETag did not match If-Match"):
            check_storage(cfg)
    monkeypatch.setattr(ObjectPath, "put_if_absent", blind)
    with pytest.raises(ConfigError, match=r"does not refuse a second conditional create"):
        check_storage(cfg)
    assert not list(storage_location(s3_storage).iterdir())  # the probes were deleted


# --------------------------------------------------------------------------- no shared folder

ray = pytest.importorskip("ray")


@pytest.fixture
def three_nodes(tmp_path: Path):
    """Head + two workers, each with its own node-local folder (``CKD_NODE_CACHE``) and no other
    folder in common with the driver that the harness uses: storage is the object store."""
    from ray.cluster_utils import Cluster

    folders = [tmp_path / f"node{i}" for i in range(3)]
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "env_vars": {"CKD_NODE_CACHE": str(folders[0])}},
    )
    for folder in folders[1:]:
        cluster.add_node(num_cpus=1, env_vars={"CKD_NODE_CACHE": str(folder)})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level=logging.WARNING)
    yield folders
    ray.shutdown()
    cluster.shutdown()


def _numbers(cfg) -> dict[str, tuple]:
    """Each run's accuracies (what the leaderboard is computed from; timings left out)."""
    keys = ("final_test_acc", "test_acc_at_best_val", "val_acc_per_epoch", "weights_sha256")
    return {r["run_id"]: tuple(r[k] for k in keys) for r in open_store(cfg).read_results()}


def test_quickstart_on_s3_across_nodes_that_share_no_folder(three_nodes, s3_storage, tmp_path):
    from harness.cli import main
    from harness.pipeline import run_pipeline

    extra = {"sweep.teacher_choices": '["none","full"]'}
    overrides = tiny_overrides(s3_storage, **extra)  # type: ignore[arg-type]
    assert main(["run", str(QUICKSTART), *overrides]) == 0  # the README's command 1, on s3, on the 3 nodes
    cfg = load_config(QUICKSTART, overrides)
    root = open_store(cfg).root
    names = {p.name for p in root.iterdir()}
    assert {"trajectories", "scores", "results", "leaderboard.md", "leaderboard.html", "tune", "logs"} <= names
    assert any(p.name.startswith("run.") for p in (root / "logs").iterdir())  # the verb's log, uploaded
    ran_on = [f for f in three_nodes if (f / "data").is_dir()]
    assert len(ran_on) >= 2, "work ran on one node only"
    local = load_config(QUICKSTART, [*tiny_overrides(tmp_path / "local", **extra), "cluster.mode=local"])
    run_pipeline(local, plots=False)
    assert _numbers(cfg) == _numbers(local) and len(_numbers(cfg)) == 6  # one run, one result, wherever stored
