"""Faults injected for real: planted pickles, escaping names, stale resume state, torn rows, two
writers, killed writers, user mistakes, W&B without a key. Nothing may run, escape or be lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.config_loading import load_config
from harness.fileio import atomic_write_bytes, sha256_file
from harness.store import CheckpointStore, StoreError, torch_bytes
from harness.teachers import train_trajectory
from tests.helpers import QUICKSTART, tiny_overrides, valid_row, wait_for

TRAJ = "cnn1d_small-mnist1d-s0"


class Planted:
    """A payload that would create ``marker`` if anything unpickled it with plain pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _cfg(storage: Path, **extra):
    return load_config(QUICKSTART, tiny_overrides(storage, **{"teacher.seeds": "[0]", **extra}))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished 2-epoch trajectory (checkpoints at 1 and 2)."""
    storage = tmp_path_factory.mktemp("faults") / "runs"
    cfg = _cfg(storage, **{"teacher.epochs": 2, "teacher.checkpoint_every": 1})
    train_trajectory(cfg, "cnn1d_small", 0)
    return cfg, CheckpointStore(storage, "quickstart")


# ----------------------------------------------------------------------------- 1. safe loading


def test_planted_checkpoint_with_matching_hash_is_refused_and_runs_nothing(finished, tmp_path, capsys):
    cfg, store = finished
    traj = store.trajectory(TRAJ)
    path, marker = traj.checkpoint_path(1), tmp_path / "pwned"
    original, manifest = path.read_bytes(), traj.manifest()
    try:
        path.write_bytes(torch_bytes({"model": Planted(marker), "arch": "cnn1d_small"}))
        planted = json.loads(json.dumps(manifest))
        planted["checkpoints"][0]["sha256"] = sha256_file(path)  # the attacker edits the manifest too
        traj.write_manifest(planted)
        rc = main(
            [
                "distill",
                str(QUICKSTART),
                *tiny_overrides(Path(cfg.storage), **{"teacher.seeds": "[0]"}),
                "teacher_choice=epoch:1",
                "seed=7",
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        path.write_bytes(original)
        traj.write_manifest(manifest)
    assert rc == 2 and not marker.exists()
    assert "holds objects other than tensors and plain data, so it was not loaded" in err


def test_planted_resume_state_is_refused_and_runs_nothing(tmp_path):
    cfg = _cfg(tmp_path / "runs", **{"teacher.epochs": 3, "teacher.checkpoint_every": 3})
    traj = CheckpointStore(tmp_path / "runs", "quickstart").trajectory(TRAJ)
    traj.dir.mkdir(parents=True)
    marker = tmp_path / "pwned"
    traj.resume_path.write_bytes(torch_bytes({"epoch": 1, "optimizer": Planted(marker)}))
    with pytest.raises(StoreError, match="resume state .* holds objects other than tensors"):
        train_trajectory(cfg, "cnn1d_small", 0)
    assert not marker.exists()


def test_planted_trial_state_is_refused_and_runs_nothing(tmp_path):
    from harness.cluster.trainable import read_trial_state

    marker = tmp_path / "pwned"
    path = tmp_path / "student_state.pt"
    path.write_bytes(torch_bytes({"history": [], "model": Planted(marker)}))
    with pytest.raises(StoreError, match="trial state .* not loaded"):
        read_trial_state(path)
    assert not marker.exists()
    torch.save({"history": [{"epoch": 1}], "model": {"w": torch.ones(2)}}, path)
    assert read_trial_state(path)["history"] == [{"epoch": 1}]  # honest state still loads


# ----------------------------------------------------------------------------- 2. paths


@pytest.mark.parametrize(
    "override, key",
    [
        ("name=../x", "name"),
        ("name=/abs/path", "name"),
        ("sweep.name=..", "sweep.name"),
        ("name=.", "name"),
        ("sweep.name=a/b", "sweep.name"),
    ],
)
def test_names_that_would_escape_storage_are_refused(tmp_path, capsys, override, key):
    storage = tmp_path / "inner" / "runs"
    assert main(["teachers", str(QUICKSTART), f"storage={storage}", override, "--local"]) == 2
    err = capsys.readouterr().err
    assert f"config key '{key}'" in err and "not a safe folder name" in err
    assert not any(tmp_path.rglob("*"))  # nothing written anywhere, inside or outside storage


def test_store_refuses_escaping_names_even_from_code(tmp_path):
    with pytest.raises(StoreError):
        CheckpointStore(tmp_path, "../elsewhere")
    with pytest.raises(StoreError):
        CheckpointStore(tmp_path, "ok").trajectory("../../etc")


# ----------------------------------------------------------------------------- 3. resume tied to config


def test_resume_from_another_config_is_refused_and_restart_starts_over(tmp_path, logs):
    extra = {"teacher.epochs": 3, "teacher.checkpoint_every": 3}  # no manifest until epoch 3
    cfg = _cfg(tmp_path / "runs", **extra)

    def stop(epoch, metrics):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_trajectory(cfg, "cnn1d_small", 0, on_epoch=stop)
    changed = _cfg(tmp_path / "runs", **extra, **{"teacher.optim.lr": 0.05})
    with pytest.raises(
        StoreError,
        match=r"resume state \(resume.pt\) was made with another config "
        r"\(teacher.optim.lr: 0.1 -> 0.05\).*--restart",
    ):
        train_trajectory(changed, "cnn1d_small", 0)
    changed.restart = True
    manifest = train_trajectory(changed, "cnn1d_small", 0)
    assert "resuming" not in logs.text and "--restart: discarded" in logs.text
    assert manifest["config"]["teacher"]["optim"]["lr"] == 0.05 and [h["epoch"] for h in manifest["history"]] == [
        1,
        2,
        3,
    ]


def test_student_state_of_another_run_is_refused(finished):
    from harness.distill import distill_student

    cfg, _ = finished
    cfg = load_config(
        QUICKSTART,
        tiny_overrides(
            Path(cfg.storage), **{"teacher.seeds": "[0]", "teacher.epochs": 2, "teacher.checkpoint_every": 1}
        ),
    )
    with pytest.raises(StoreError, match="belongs to run 'someone-else'"):
        distill_student(cfg, resume={"run_id": "someone-else", "history": []})


# ----------------------------------------------------------------------------- 4. torn rows


def _kill_mid_append(path: Path, text: str) -> None:
    """A process that writes ``text`` to ``path`` and is SIGKILLed before finishing the line."""
    lines = ["import os, signal", f"f = open({str(path)!r}, 'a')", f"f.write({text!r})", "f.flush()"]
    code = "\n".join([*lines, "os.kill(os.getpid(), signal.SIGKILL)", ""])
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL


def test_torn_and_non_object_lines_are_moved_never_lost(tmp_path, logs):
    """An older store's results.jsonl torn by a crash: its rows survive, bad lines move aside."""
    store = CheckpointStore(tmp_path, "exp")
    store.root.mkdir(parents=True)
    store.results_jsonl.write_text(json.dumps(valid_row("a")) + "\n")
    _kill_mid_append(store.results_jsonl, '{"run_id": "b", "x"')
    with open(store.results_jsonl, "a") as f:
        f.write("\n[1, 2]\n")  # valid JSON, not an object
    assert [r["run_id"] for r in store.read_results()] == ["a"]  # read as it is: nothing moved
    assert "skipped 2 stored row(s)" in logs.text
    assert store.append_result(valid_row("c"))  # the first write gives "a" its row file, then writes "c"
    assert store.results_rejected.read_text().splitlines() == ['{"run_id": "b", "x"', "[1, 2]"]
    assert [r["run_id"] for r in store.read_results()] == ["a", "c"]
    assert store.compact_results() == 2
    assert [r["run_id"] for r in store.read_results()] == ["a", "c"]
    assert store.results_csv.read_text().count("\n") == 3  # header + 2 rows
    assert store.results.find("a") == valid_row("a")  # "a" got a row file of its own
    assert not store.append_result(valid_row("a", final_test_acc=0.9))  # so it is never written twice


def test_row_files_are_created_once_and_unreadable_ones_are_moved_aside(tmp_path, logs):
    store = CheckpointStore(tmp_path, "exp")
    assert store.append_result(valid_row("r1"))
    assert not store.append_result(valid_row("r1", final_test_acc=0.9))  # a retried run is never duplicated
    assert store.results.find("r1")["final_test_acc"] == 0.5 and store.results.ids() == {"r1"}
    (store.results.rows_dir / "r2.json").write_text("[not, an, object]\n")
    assert [r["run_id"] for r in store.read_results()] == ["r1"] and "1 unreadable" in logs.text
    store.compact_results()
    rejected = store.results.rejected_dir / "unreadable" / "r2.json"
    assert rejected.is_file() and not (store.results.rows_dir / "r2.json").exists()
    assert [r["run_id"] for r in store.read_results()] == ["r1"]


# ----------------------------------------------------------------------------- 5. one writer per trajectory

TRAIN = """
import os, time
from harness.config_loading import load_config
from harness.logs import setup_logging
from harness.teachers import train_trajectory
setup_logging()
cfg = load_config({quickstart!r}, {overrides!r})

def hold_at_epoch_2(epoch, metrics):  # the first writer pauses, lock held, until the test says go
    while epoch == 2 and {gate!r} and not os.path.exists({gate!r}):
        time.sleep(0.05)

train_trajectory(cfg, "cnn1d_small", 0, on_epoch=hold_at_epoch_2)
"""


def test_two_processes_never_train_one_trajectory_and_a_dead_holder_frees_it(tmp_path):
    overrides = tiny_overrides(
        tmp_path / "runs", **{"teacher.seeds": "[0]", "teacher.epochs": 4, "teacher.checkpoint_every": 2}
    )
    gate, err2 = tmp_path / "go", tmp_path / "second.err"
    traj = CheckpointStore(tmp_path / "runs", "quickstart").trajectory(TRAJ)
    first = subprocess.Popen(
        [sys.executable, "-c", TRAIN.format(quickstart=str(QUICKSTART), overrides=overrides, gate=str(gate))]
    )
    wait_for(lambda: traj.resume_path.exists(), timeout=60)  # the first holds the lock, paused at epoch 2
    with open(err2, "w") as err:
        second = subprocess.Popen(
            [sys.executable, "-c", TRAIN.format(quickstart=str(QUICKSTART), overrides=overrides, gate="")], stderr=err
        )
        wait_for(lambda: "is being trained by pid" in err2.read_text(), timeout=60)  # the second waits
        gate.touch()
        assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0, err2.read_text()[-2000:]
    assert "finished already; skipping" in err2.read_text()
    assert [h["epoch"] for h in traj.manifest()["history"]] == list(range(1, 5))  # each epoch once

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time
        from harness.store import CheckpointStore
        with CheckpointStore({str(tmp_path / "runs2")!r}, "quickstart").trajectory({TRAJ!r}).lock():
            print("held", flush=True)
            time.sleep(600)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    began = time.time()
    cfg2 = _cfg(tmp_path / "runs2", **{"teacher.epochs": 2, "teacher.checkpoint_every": 2})
    assert train_trajectory(cfg2, "cnn1d_small", 0)["finished"] and time.time() - began < 60  # not blocked


# ----------------------------------------------------------------------------- 9. durability


def _leave_temp_file(target: Path) -> None:
    """A writer killed between writing its temp file and the rename."""
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from harness import fileio
        def die(*a):
            os.kill(os.getpid(), signal.SIGKILL)
        fileio.os.replace = die
        fileio.atomic_write_bytes(Path({str(target)!r}), b"x" * 1000)
    """)
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL


def test_temp_files_of_killed_writes_are_removed_when_the_stage_starts(tmp_path):
    cfg = _cfg(tmp_path / "runs", **{"teacher.epochs": 1, "teacher.checkpoint_every": 1})
    store = CheckpointStore(tmp_path / "runs", "quickstart")
    _leave_temp_file(store.trajectory(TRAJ).dir / "manifest.json")
    _leave_temp_file(store.results_jsonl)
    assert len(list(store.trajectory(TRAJ).dir.glob(".*.tmp"))) == 1 and len(list(store.root.glob(".*.tmp"))) == 1
    train_trajectory(cfg, "cnn1d_small", 0)
    assert not list(store.trajectory(TRAJ).dir.glob(".*.tmp"))
    store.compact_results()  # the results stage's clean-up (ckd leaderboard, the end of a sweep)
    assert not list(store.root.glob(".*.tmp"))


def test_atomic_write_leaves_no_temp_file_on_error(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "f", None)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- 6. user mistakes

YAML_MISTAKES = {
    "malformed": "name: x\n  teacher: [1\n",
    "empty": "",
    "tabs": "name: x\ndata:\n\tname: mnist1d\n",
    "a list": "- name: x\n- teacher: y\n",
}


@pytest.mark.parametrize("kind", sorted(YAML_MISTAKES))
def test_bad_yaml_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, kind):
    path = tmp_path / "c.yaml"
    path.write_text(YAML_MISTAKES[kind])
    storage = tmp_path / "runs"
    assert main(["teachers", str(path), f"storage={storage}", "--local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ckd teachers: error: config file") and "Traceback" not in err
    assert not storage.exists()


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.eval_batch_size=0", "data.eval_batch_size"),
        ("teacher.optim.momentum=1.0", "teacher.optim.momentum"),
        ("student.optim.momentum=-0.1", "student.optim.momentum"),
        ("teacher.archs=[]", "teacher.archs"),
        ("student.archs=[]", "student.archs"),
        ("sweep.teacher_choices=[]", "sweep.teacher_choices"),
    ],
)
def test_bad_values_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, override, key):
    storage = tmp_path / "runs"
    assert main(["run", str(QUICKSTART), f"storage={storage}", override, "--local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"config key '{key}'" in err and not storage.exists()


def test_a_val_fraction_that_empties_a_split_fails_before_training(tmp_path, capsys):
    storage = tmp_path / "runs"
    args = [
        "teachers",
        str(QUICKSTART),
        f"storage={storage}",
        "data.num_samples=400",
        "data.val_fraction=0.0001",
        "--local",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        "ckd teachers: error: config key 'data.val_fraction': the val split"
    ) and "Traceback" not in "".join(err)
    assert not (storage / "quickstart").exists()  # no experiment folder (only the shared data cache)


def test_storage_that_is_a_file_is_named(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["teachers", str(QUICKSTART), f"storage={blocker / 'runs'}", "--local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{blocker} is a file" in err


@pytest.fixture
def tmpfs(tmp_path):
    """A real small filesystem (mount needs root); skipped where mounting is not allowed."""
    mounted = []

    def mount(size: str, read_only: bool = False) -> Path:
        target = tmp_path / f"fs{len(mounted)}"
        target.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)], capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", str(target)], capture_output=True)


def test_read_only_and_full_storage_are_named(tmpfs, capsys):
    ro, full = tmpfs("1m", read_only=True), tmpfs("64k")
    assert main(["teachers", str(QUICKSTART), f"storage={ro / 'runs'}", "--local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write in {ro}" in err
    assert main(["teachers", str(QUICKSTART), f"storage={full / 'runs'}", "--local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{full} is full" in err and not any(full.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_before_compute(tmp_path, capsys):
    assert main(["teachers", str(QUICKSTART), f"storage={tmp_path / 'runs'}", "device=cuda", "--local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config key 'device': 'cuda' but 0 CUDA GPU(s)" in err
    assert not (tmp_path / "runs").exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["teachers", str(QUICKSTART), f"storage={tmp_path}", "teacher.epochs=0", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith(
        "ckd teachers: error: config key 'teacher.epochs'"
    )


# ----------------------------------------------------------------------------- 8. W&B never blocks


def test_online_without_a_key_or_a_server_falls_back_to_offline_quickly(tmp_path, monkeypatch, logs):
    from harness import tracking

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setattr(tracking, "_ONLINE_CHECKS", {})
    monkeypatch.setattr(tracking, "_WARNED", set())
    cfg = load_config(QUICKSTART, [f"storage={tmp_path}", "tracking.mode=online"])
    began = time.time()
    assert tracking.tracking_mode(cfg) == "offline" and tracking.tracking_mode(cfg) == "offline"
    assert logs.text.count("no W&B API key") == 1  # one warning, not one per call
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    assert tracking.tracking_mode(cfg) == "offline" and "cannot be reached" in logs.text
    assert time.time() - began < 15
    assert tracking.init_kwargs(cfg)["mode"] == "offline"
