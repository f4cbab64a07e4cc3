"""What a Tune trial receives and keeps (issue 22): the config without the grid's lists, no copy
per trial, and a worker process that reuses the verified data and teacher logits between its
trials without changing a single bit of a row."""

from __future__ import annotations

import copy
import pickle

import pytest

from harness import process_memo
from harness.cluster.trainable import trial_config
from harness.config_loading import load_config
from harness.distill import distill_pack
from harness.experiment import open_store
from harness.runs import Run
from harness.teachers import train_trajectory
from tests.helpers import QUICKSTART, tiny_overrides

COMPUTED = ("run_id", "final_val_acc", "final_test_acc", "best_val_acc", "test_acc_at_best_val", "weights_sha256")


def _cfg(tmp_path, *extra: str):
    return load_config(QUICKSTART, [*tiny_overrides(tmp_path / "runs"), *extra])


@pytest.mark.parametrize("seeds", ["range(0,100000)", "[" + ",".join(map(str, range(1000))) + "]"])
def test_trial_config_leaves_the_grid_out(tmp_path, seeds):
    cfg = _cfg(tmp_path, f"sweep.seeds={seeds}", "sweep.temperature=[1.0,2.0,4.0]", "cluster.trial.cpus=2", "threads=0")
    before = pickle.dumps(cfg)
    slim = trial_config(cfg)
    assert list(slim.sweep.seeds) == [] and list(slim.sweep.teacher_choices) == []
    assert list(slim.sweep.temperature) == [] and list(slim.sweep.kd_weight) == []
    assert slim.threads == 2  # the trial's threads, set once on the driver
    assert pickle.dumps(cfg) == before  # the driver's config is untouched
    # what every trial unpickles does not grow with the grid: the same size for 3 or 10^5 seeds
    small = trial_config(
        _cfg(tmp_path, "sweep.seeds=[0,1,2]", "sweep.temperature=[4.0]", "cluster.trial.cpus=2", "threads=0")
    )
    assert abs(len(pickle.dumps(slim)) - len(pickle.dumps(small))) < 64
    # a grid entry names everything a run needs: the slim config resolves it like the full one
    entry = {"teacher_choice": "full", "seed": 1234, "temperature": 2.0, "kd_weight": 0.5, "teacher_seed": 0}
    assert Run.from_dict(slim, entry) == Run.from_dict(cfg, entry)


def test_model_based_searchers_keep_the_seeds(tmp_path):
    """optuna / hyperopt entries lack the teacher seed: it follows the student seed's place in
    ``sweep.seeds`` (paired), so their trials keep the seeds (already a search dimension)."""
    cfg = _cfg(tmp_path, "sweep.search=optuna", "sweep.seeds=[5,6]", "teacher.seeds=[0,1]")
    slim = trial_config(cfg)
    assert list(slim.sweep.seeds) == [5, 6]
    entry = {"teacher_choice": "full", "seed": 6, "temperature": 4.0, "kd_weight": 0.5}
    assert Run.from_dict(slim, entry).teacher_seed == Run.from_dict(cfg, entry).teacher_seed == 1


def test_worker_memo_keeps_every_bit(tmp_path):
    """Two students trained one after the other in one process with the memo (a reused Tune
    worker) get the rows they get without it, and the memo held the data and teacher logits."""
    cfg = _cfg(tmp_path, "data.num_samples=2000", "teacher.seeds=[0]", "student.epochs=1")
    train_trajectory(cfg, "cnn1d_small", 0)
    runs = [
        Run.from_dict(cfg, {"teacher_choice": c, "seed": s, "temperature": 4.0, "kd_weight": 0.5, "teacher_seed": 0})
        for c, s in (("full", 0), ("fraction:0.5", 1))
    ]

    def rows(name: str, memo: bool) -> list[dict]:
        other = copy.deepcopy(cfg)
        other.storage = str(tmp_path / name)
        dst = open_store(other).trajectories_dir
        dst.parent.mkdir(parents=True)
        dst.symlink_to(open_store(cfg).trajectories_dir, target_is_directory=True)
        process_memo.enable(memo)
        try:
            out = [distill_pack(other, [run])[0] for run in runs]
            if memo:
                assert len(process_memo.SPLITS) == 1 and len(process_memo.LOGITS) >= 3
        finally:
            process_memo.enable(False)
        return [{k: r[k] for k in COMPUTED} for r in out]

    assert rows("memo", True) == rows("fresh", False)
    assert len(process_memo.SPLITS) == len(process_memo.LOGITS) == 0  # disabled: forgotten
