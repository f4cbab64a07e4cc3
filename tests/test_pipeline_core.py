"""End to end through the CLI on tiny real data: teachers -> checkpoints -> distillation."""

from __future__ import annotations

import pytest
import torch

from harness.cli import main
from harness.config_loading import load_config
from harness.fileio import sha256_file
from harness.store import CheckpointStore
from harness.teachers import train_trajectory
from tests.helpers import QUICKSTART, tiny_overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny teacher trajectories (4 epochs, checkpoints at 2 and 4), trained via the CLI."""
    storage = tmp_path_factory.mktemp("store") / "runs"
    overrides = tiny_overrides(storage, **{"cluster.mode": "local"})  # in-process; Ray paths: test_cluster*.py
    assert main(["teachers", str(QUICKSTART), *overrides]) == 0
    return overrides, CheckpointStore(storage, "quickstart")


def test_teachers_write_manifest_and_verified_checkpoints(trained):
    _, store = trained
    names = [t.name for t in store.trajectories()]
    assert names == ["cnn1d_small-mnist1d-s0", "cnn1d_small-mnist1d-s1"]
    m = store.trajectory(names[0]).manifest()
    assert m["finished"] and [c["epoch"] for c in m["checkpoints"]] == [2, 4]
    for c in m["checkpoints"]:
        assert sha256_file(store.trajectory(names[0]).dir / c["file"]) == c["sha256"]
        for key in (
            "train_acc",
            "val_acc",
            "test_acc",
            "train_loss",
            "val_loss",
            "test_loss",
            "train_confidence",
            "wall_time_s",
        ):
            assert key in c
    assert m["checkpoints"][-1]["test_acc"] > 0.3  # a real teacher learns something in 4 epochs
    assert len(m["history"]) == 4 and m["config_hash"]


def test_rerun_skips_finished_trajectories(trained, logs):
    overrides, store = trained
    before = store.trajectory("cnn1d_small-mnist1d-s0").manifest_path.stat().st_mtime_ns
    assert main(["teachers", str(QUICKSTART), *overrides]) == 0
    assert "[cnn1d_small-mnist1d-s0] finished already; skipping" in logs.messages
    assert store.trajectory("cnn1d_small-mnist1d-s0").manifest_path.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "choice, epochs",
    [
        ("none", []),
        ("full", [4]),
        ("epoch:2", [2]),
        ("fraction:0.5", [2]),
        ("snapshot:[0.5,1.0]", [2, 4]),
        ("full_ensemble:2", [4, 4]),
    ],
)
def test_distill_each_teacher_choice_appends_a_row(trained, choice, epochs):
    overrides, store = trained
    assert main(["distill", str(QUICKSTART), *overrides, f"teacher_choice={choice}", "seed=3"]) == 0
    rows = [r for r in store.read_results() if r["teacher_choice"] == choice and r["seed"] == 3]
    assert len(rows) == 1
    row = rows[0]
    assert [c["epoch"] for c in row["teacher_checkpoints"]] == epochs
    assert len(row["val_acc_per_epoch"]) == 2 and 0.0 < row["final_test_acc"] <= 1.0
    if choice == "full_ensemble:2":
        assert {c["trajectory"] for c in row["teacher_checkpoints"]} == {
            "cnn1d_small-mnist1d-s0",
            "cnn1d_small-mnist1d-s1",
        }
    if choice != "none":
        assert 0.0 < row["teacher_test_acc"] <= 1.0
    header = store.results_csv.read_text().splitlines()[0].split(",")
    assert "final_test_acc" in header and "teacher_checkpoints" in header


def test_distill_is_idempotent(trained, logs):
    overrides, store = trained
    args = ["distill", str(QUICKSTART), *overrides, "teacher_choice=full", "seed=5"]
    assert main(args) == 0 and main(args) == 0
    assert any(m.startswith("[distill] run ") and m.endswith("already; skipping") for m in logs.messages)
    assert sum(r["seed"] == 5 for r in store.read_results()) == 1


def test_distill_errors_are_clear(trained, capsys):
    overrides, store = trained
    assert main(["distill", str(QUICKSTART), *overrides, "teacher_choice=epoch:3"]) == 2
    assert "no checkpoint at epoch 3; saved epochs: [2, 4]" in capsys.readouterr().err
    assert main(["distill", str(QUICKSTART), *overrides, "teacher_choice=full_ensemble:3"]) == 2
    assert "needs 3 trajectories" in capsys.readouterr().err


def test_corrupt_checkpoint_is_never_used(trained, capsys):
    overrides, store = trained
    traj = store.trajectory("cnn1d_small-mnist1d-s1")
    path = traj.checkpoint_path(2)
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-10] + b"0123456789")
        assert main(["distill", str(QUICKSTART), *overrides, "teacher_choice=epoch:2", "teacher_seed=1", "seed=9"]) == 2
        assert "does not match its sha256" in capsys.readouterr().err
    finally:
        path.write_bytes(original)
    assert not any(r["seed"] == 9 for r in store.read_results())


def test_unfinished_trajectory_is_not_a_teacher(tmp_path, capsys):
    overrides = tiny_overrides(tmp_path / "runs", **{"teacher.seeds": "[0]"})
    cfg = load_config(QUICKSTART, overrides)

    def stop_after_two(epoch, metrics):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_trajectory(cfg, "cnn1d_small", 0, on_epoch=stop_after_two)
    assert main(["distill", str(QUICKSTART), *overrides, "teacher_choice=full"]) == 2
    assert "is not finished (epoch 2 of 4)" in capsys.readouterr().err


def test_resumed_trajectory_is_bit_identical(tmp_path, logs):
    """Interrupt after epoch 3, resume, and compare every tensor with an uninterrupted run."""
    extra = {"teacher.seeds": "[0]", "teacher.epochs": 5, "teacher.checkpoint_every": 2, "data.num_samples": 2000}
    straight = load_config(QUICKSTART, tiny_overrides(tmp_path / "a", **extra))
    train_trajectory(straight, "cnn1d_small", 0)
    broken = load_config(QUICKSTART, tiny_overrides(tmp_path / "b", **extra))

    def crash(epoch, metrics):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_trajectory(broken, "cnn1d_small", 0, on_epoch=crash)
    train_trajectory(broken, "cnn1d_small", 0)
    assert "[cnn1d_small-mnist1d-s0] resuming after epoch 3/5" in logs.messages
    a = CheckpointStore(tmp_path / "a", "quickstart").trajectory("cnn1d_small-mnist1d-s0")
    b = CheckpointStore(tmp_path / "b", "quickstart").trajectory("cnn1d_small-mnist1d-s0")
    for epoch in (2, 4, 5):
        wa, wb = a.load_checkpoint(epoch)["model"], b.load_checkpoint(epoch)["model"]
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"epoch {epoch} differs after resume"
    ma, mb = a.manifest(), b.manifest()
    assert [c["sha256"] for c in ma["checkpoints"]] == [c["sha256"] for c in mb["checkpoints"]]
    assert len(mb["history"]) == 5


def test_changed_config_does_not_mix_with_stored_trajectory(trained, capsys):
    overrides, _ = trained
    assert main(["teachers", str(QUICKSTART), *overrides, "teacher.optim.lr=0.05"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "made with another config (teacher.optim.lr: 0.1 -> 0.05)" in err and "--restart" in err


def test_cli_logs_each_verb_to_its_file_and_honours_quiet(trained, capsys):
    overrides, store = trained
    log_file = store.root / "logs" / "teachers.log"
    size = log_file.stat().st_size if log_file.exists() else 0
    assert main(["teachers", str(QUICKSTART), *overrides, "-q"]) == 0
    assert "finished already" not in capsys.readouterr().err  # -q: warnings only on the console
    added = log_file.read_text()[size:]
    assert "INFO harness.teachers: [cnn1d_small-mnist1d-s1] finished already; skipping" in added  # the file has it all
