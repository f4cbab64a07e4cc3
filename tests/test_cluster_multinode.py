"""A simulated multi-node cluster (``ray.cluster_utils.Cluster``): trajectories spread over the
nodes; a worker node is removed while teachers train and another while the sweep runs, and the
pipeline still ends with every trajectory finished and every trial in results.csv exactly once.
Also: the shared-storage check passes here and fails, naming the nodes, when they cannot see it.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from harness.config_loading import load_config
from harness.experiment import open_store
from harness.sweep import sweep_runs
from tests.helpers import (
    QUICKSTART,
    tiny_overrides,
    wait_for,
)

ray = pytest.importorskip("ray")
# ray and harness.cluster (which imports ray) must follow the skip guard above (hence E402).
from ray.cluster_utils import Cluster  # noqa: E402

from harness.cluster import connection  # noqa: E402
from harness.cluster.connection import ClusterSession, check_shared_storage, cluster_info  # noqa: E402
from harness.cluster.errors import StorageNotSharedError  # noqa: E402
from harness.cluster.scoring import Scorer  # noqa: E402
from harness.cluster.sweep import run_sweep  # noqa: E402
from harness.cluster.teachers import TrajectoryRunner  # noqa: E402

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
pytestmark = pytest.mark.timeout(300)

FAST_FAILURE_DETECTION = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 200,
    "health_check_failure_threshold": 3,
}


@pytest.fixture(scope="module")
def nodes():
    """Head (1 CPU, runs the driver) + two workers (1 CPU each)."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": FAST_FAILURE_DETECTION})
    workers = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level=logging.WARNING)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def test_storage_check_passes_on_shared_storage_and_names_blind_nodes(nodes, tmp_path, monkeypatch, logs):
    cfg = load_config(QUICKSTART, tiny_overrides(tmp_path / "runs"))
    cfg.storage = str((tmp_path / "runs").resolve())
    info = cluster_info(None, started_here=False)
    assert info.multi_node and len(info.nodes) == 3
    check_shared_storage(cfg, info)
    assert "visible from all 3 nodes" in logs.text
    # the driver's token is not what the nodes find: as if each node had its own folder there
    monkeypatch.setattr(connection, "_write_token", lambda path, token: connection.Path(path).write_text("elsewhere"))
    with pytest.raises(
        StorageNotSharedError, match=r"storage=.* is not shared.*node .*holds another token.*shared filesystem"
    ):
        check_shared_storage(cfg, info)
    assert not list((tmp_path / "runs" / "quickstart").glob(".storage-probe-*"))  # probes cleaned up


def test_worker_loss_loses_nothing_and_duplicates_nothing(nodes, tmp_path, logs):
    cluster, (w1, w2) = nodes
    cfg = load_config(
        QUICKSTART,
        tiny_overrides(
            tmp_path / "runs",
            **{
                "teacher.seeds": "[0,1,2]",
                "teacher.epochs": 20,
                "teacher.checkpoint_every": 10,
                "scoring.estimators": "[accuracy]",
                "cluster.progress_interval_s": 2,
                "sweep.teacher_choices": '["none","full","snapshot:[0.5,1.0]"]',
                "sweep.seeds": "[0,1,2]",
                "student.epochs": 30,  # worker 2 is removed at epoch 10: mid-trial
                "sweep.checkpoint_every": 5,
            },
        ),
    )
    session = ClusterSession(cfg)
    assert session.info.multi_node and "visible from all 3 nodes" in logs.text

    # --- teachers: one actor per node (SPREAD); remove worker 1 while its trajectory trains
    began = time.time()
    runner = TrajectoryRunner(session).start()
    w1_id = w1.node_id[:8]
    on_w1 = wait_for(
        lambda: next(
            (n for n, r in runner.progress().items() if r.get("node") == w1_id and r.get("epoch", 0) >= 3), None
        ),
        timeout=90,
    )
    nodes_used = {r.get("node") for r in runner.progress().values()}
    cluster.remove_node(w1, allow_graceful=False)
    manifests = runner.wait()
    print(f"teachers {time.time() - began:.1f}s")
    assert len(nodes_used) == 3, nodes_used  # spread over head + both workers
    store = open_store(session.cfg)
    for name, m in manifests.items():
        assert m["finished"] and [h["epoch"] for h in m["history"]] == list(range(1, 21)), name
    attempts = runner.progress()[on_w1]["attempts"]
    assert len(attempts) == 2 and attempts[1]["node"] != w1_id and attempts[1]["first_epoch"] > 3

    t_teachers = time.time()
    scorer = Scorer(session)
    for name in manifests:
        scorer.submit(name)
    scorer.wait()
    scorer.close()

    # --- sweep: remove worker 2 while a trial trains on it
    w2_id = w2.node_id
    removed: dict = {}

    def remove_w2_mid_trial() -> None:
        def trial_on_w2():
            for log in (store.root / "tune").glob("*/trial_*/distill.log"):
                text = log.read_text()
                if w2_id in text and "epoch  10/30" in text:
                    return log
            return None

        removed["log"] = wait_for(trial_on_w2, timeout=120, every=0.02)
        cluster.remove_node(w2, allow_graceful=False)

    t = threading.Thread(target=remove_w2_mid_trial, daemon=True)
    t.start()
    t_sweep = time.time()
    run_sweep(session)
    print(f"teachers+score {t_sweep - t_teachers:.1f}s after teachers; sweep {time.time() - t_sweep:.1f}s")
    t.join(timeout=10)
    assert "log" in removed, "no trial ran on worker 2"
    assert "resuming from its checkpoint after epoch" in removed["log"].read_text()
    rows = store.read_results()
    planned = sweep_runs(session.cfg)
    assert len(planned) == 9
    assert len(rows) == 9 and len({r["run_id"] for r in rows}) == 9  # every trial once
    assert all(len(r["val_acc_per_epoch"]) == 30 for r in rows)
    session.close()
