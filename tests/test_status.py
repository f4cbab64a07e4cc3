"""``ckd status`` and ``--dry-run`` on a real store (issue 21, point 6): tiny teachers trained and
scored in this process, where ``binning`` is degenerate (its scores are equal for every checkpoint)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.config_loading import load_config
from harness.data.shapes import data_shape
from harness.failures import record
from harness.fileio import exclusive_lock
from harness.leases import lease_path
from harness.status import sweep_state
from harness.store import CheckpointStore
from harness.sweep import sweep_runs
from tests.helpers import QUICKSTART, tiny_overrides, valid_row

CHOICES = "sweep.teacher_choices=[none,full,selected:binning,epoch:3]"
SCORING = "scoring.estimators=[binning]"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Two finished 4-epoch trajectories scored with ``binning`` alone (about 15 s)."""
    storage = tmp_path_factory.mktemp("status") / "runs"
    over = [*tiny_overrides(storage), SCORING, "-q"]
    assert main(["teachers", str(QUICKSTART), "--local", *over]) == 0
    assert main(["score", str(QUICKSTART), "--local", *over]) == 0
    return storage


@pytest.fixture
def store(trained: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "runs"
    shutil.copytree(trained, dst)
    return dst


def args(storage: Path, *extra: str) -> list[str]:
    return [str(QUICKSTART), *tiny_overrides(storage), SCORING, CHOICES, *extra]


def test_status_counts_done_running_queued_skipped_failed_from_the_store(store, capsys):
    cfg = load_config(QUICKSTART, [*tiny_overrides(store), SCORING, CHOICES])
    state = sweep_state(cfg, sweep_runs(cfg))
    assert len(state.todo) == 6 and len(state.skipped) == 6 and not state.waiting  # none, full | binning, epoch:3
    runner, failing = state.todo[0], state.todo[1]
    root = CheckpointStore(store, cfg.name).root
    record(root, failing.run.to_dict(), "failed", "boom in epoch 1", error=RuntimeError("boom"))
    with exclusive_lock(lease_path(root, runner.run_id)):  # a run another sweep is training
        assert main(["status", *args(store)]) == 0
    out = capsys.readouterr().out
    assert "2 trajectories: 2 finished, 0 running, 0 queued" in out
    assert "[score]    2 fresh, 0 stale, 0 missing" in out
    assert "12 runs: 0 done, 1 running, 4 queued, 6 skipped, 1 failed" in out
    assert re.search(r"skipped  selected:binning/mlp_small/s0: selector 'binning' is degenerate", out)
    assert "skipped  epoch:3/mlp_small/s1: trajectory cnn1d_small-mnist1d-s1 has no checkpoint at epoch 3" in out
    assert re.search(r"failed   \S+: boom in epoch 1 \(log: failures/[0-9a-f]{16}\.log\)", out)
    assert f"running  {runner.run.teacher_choice}/mlp_small/s{runner.run.seed}" in out and "pid " in out
    assert "next: a run is in progress" in out
    assert max(len(line) for line in out.splitlines() if str(store) not in line) <= 120  # paths are not cut


def test_status_of_a_missing_experiment_is_one_line_with_the_fix(tmp_path, capsys):
    assert main(["status", str(QUICKSTART), f"storage={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ckd status: error: no experiment at {tmp_path}/quickstart; run `ckd run CONFIG` first"


def test_dry_run_lists_skips_real_sample_size_and_no_temp_paths(store, capsys):
    assert main(["run", *args(store), "--dry-run"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "/tmp/tmp" not in text and "cached at" not in text and "error" not in text.lower()
    # 4000 samples x train_split 0.25 = 1000 pool rows, val 10% = 100: the scorer's real sample
    assert "on 100 validation samples (scoring.num_samples=1000, val split 100)" in out.out
    assert "[sweep] 12 runs in the grid (grid): 0 done, 6 to train, 6 to skip" in out.out
    assert "  skip selected:binning/mlp_small/s1: selector 'binning' is degenerate" in out.out
    assert "[time] no measured rates yet" in out.out  # the teachers are done: students left, none measured


def test_dry_run_estimates_time_from_measured_rates(store, capsys):
    CheckpointStore(store, "quickstart").append_result(valid_row("x" * 16, wall_time_s=3.0, epochs=2, pack_size=1))
    assert main(["sweep", *args(store), "--dry-run"]) == 0
    # 6 runs x 2 epochs at 1.5 s per student-epoch (the row's 3 s over 2 epochs)
    assert "[time] about 18s of work, one worker (students 18s)" in capsys.readouterr().out


def test_dry_run_before_teachers_counts_queued_runs_and_reads_no_data(tmp_path, capsys):
    assert main(["run", *args(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "12 runs in the grid (grid): 0 done, 12 to train (9 wait for their teachers), 0 to skip" in out
    assert "on 100 validation samples (scoring.num_samples=1000, capped by the val split of 100)" in out
    assert "up to " in out and " mlp_small students per trial" in out
    assert not (tmp_path / "runs").exists()


def test_data_shapes_match_the_built_splits(tmp_path):
    from harness.data import build_splits

    for name, options in (("mnist1d", {"num_samples": 1000}), ("digits", {})):
        splits = build_splits(name, storage_dir=tmp_path, seed=0, val_fraction=0.1, **options)
        shape = data_shape(name, options)
        assert shape.input_shape == tuple(splits.input_shape) and shape.num_classes == splits.num_classes
        assert shape.val_size(0.1) == len(splits.val)
