"""Safe file handling (issue 18, faults 1, 7, 10, 11), injected for real: symlinks, hard links and
FIFOs planted as locks, logs, row and scores files; /dev/zero behind a row or scores file; `~` in
`storage`; non-UTF-8 and wrongly shaped stored JSON; over-long names; a full disk and a file-size
limit. Each ends in one line naming the file and what to do (exit 2 through the CLI), with
nothing outside storage touched, nothing half written and no hang."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import experiment
from harness.cli import main
from harness.config_loading import load_config
from harness.fileio import JSON_MAX_BYTES, StoredFileError, atomic_write_bytes, exclusive_lock, read_regular_bytes
from harness.logs import file_log
from harness.results import ResultsTable
from harness.scoring.scores_file import ScoresError, read_all_scores, read_scores
from harness.store import CheckpointStore, StoreError
from tests.helpers import QUICKSTART, ROOT, tiny_overrides
from tests.synthetic_results import result_row

TRAJ = "cnn1d_small-mnist1d-s0"
PRECIOUS = b"a file outside storage that must never change\n"


def _teachers(storage: Path, *extra: str) -> list[str]:
    """``ckd teachers`` of one tiny trajectory, in this process."""
    return ["teachers", str(QUICKSTART), *tiny_overrides(storage, **{"teacher.seeds": "[0]"}), *extra, "--local", "-q"]


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI's stderr, asserted to be one error line (no traceback)."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside storage that a planted link points at."""
    target = tmp_path / "outside" / "precious.txt"
    target.parent.mkdir()
    target.write_bytes(PRECIOUS)
    return target


# ----------------------------------------------------------------------------- fault 1: locks and logs


def _plant(path: Path, how: str, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "symlink":
        path.symlink_to(target)
    elif how == "hardlink":
        os.link(target, path)
    else:
        os.mkfifo(path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("planted", "verb", "how"),
    [
        (".results.lock", "leaderboard", "symlink"),
        (".results.lock", "leaderboard", "hardlink"),
        (".results.lock", "leaderboard", "fifo"),
        (f"trajectories/{TRAJ}/.lock", "teachers", "symlink"),
        ("logs/leaderboard.log", "leaderboard", "symlink"),
        ("logs/leaderboard.log", "leaderboard", "hardlink"),
        ("logs/leaderboard.log", "leaderboard", "fifo"),
    ],
)
def test_planted_lock_or_log_is_refused_and_its_target_untouched(tmp_path, outside, capsys, planted, verb, how):
    storage = tmp_path / "runs"
    path = storage / "quickstart" / planted
    _plant(path, how, outside)
    args = _teachers(storage) if verb == "teachers" else [verb, str(QUICKSTART), f"storage={storage}"]
    assert main(args) == 2
    err = _one_line(capsys)
    assert str(path) in err and "not a regular file" in err and f"rm {path}" in err
    assert outside.read_bytes() == PRECIOUS  # never truncated, overwritten or appended to


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("planted", "verb"), [("logs", "leaderboard"), ("results/rejected", "leaderboard"), ("", "teachers")]
)
def test_a_folder_linked_out_of_storage_is_refused_before_anything_is_written(tmp_path, outside, capsys, planted, verb):
    """A planted folder link (``logs -> /elsewhere``, or the experiment folder itself) would make
    new files land outside storage: the verb refuses it in one line and writes nothing there."""
    storage = tmp_path / "runs"
    link = storage / "quickstart" / planted if planted else storage / "quickstart"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside.parent, target_is_directory=True)
    args = _teachers(storage) if verb == "teachers" else [verb, str(QUICKSTART), f"storage={storage}"]
    assert main(args) == 2
    err = _one_line(capsys)
    assert str(link) in err and f"rm {link}" in err
    assert sorted(p.name for p in outside.parent.iterdir()) == ["precious.txt"]  # nothing written out there


def test_links_inside_the_experiment_folder_are_fine(tmp_path):
    """W&B's ``latest-run`` link points inside the experiment folder: not refused."""
    cfg = load_config(QUICKSTART, [f"storage={tmp_path / 'runs'}"])
    wandb = tmp_path / "runs" / "quickstart" / "wandb"
    (wandb / "run-1").mkdir(parents=True)
    (wandb / "latest-run").symlink_to(wandb / "run-1", target_is_directory=True)
    experiment.check_storage(cfg)


def test_own_lock_and_log_files_still_work(tmp_path):
    """The regular files the harness makes itself: reused, the holder written, lines appended."""
    lock, log = tmp_path / ".lock", tmp_path / "logs" / "x.log"
    for _ in range(2):
        with exclusive_lock(lock):
            assert lock.read_text().startswith(f"pid {os.getpid()} on ")
    for n in range(2):
        with file_log(log):
            logging.getLogger("harness.test").info(f"line {n}")
    assert [line.split(": ", 1)[1] for line in log.read_text().splitlines()] == ["line 0", "line 1"]


# ----------------------------------------------------------------------------- fault 7: FIFO, /dev/zero


def _plant_endless(path: Path, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["fifo", "devzero"])
def test_an_endless_row_file_is_set_aside_without_hanging(tmp_path, how):
    table = ResultsTable(tmp_path / "quickstart")
    good = result_row("none", 0, None, [], 0.5)
    assert table.append(good)
    bad = table.rows_dir / "planted.json"
    _plant_endless(bad, how)
    assert table.read() == [good]
    assert table.find("planted") is None
    assert table.compact() == 1
    assert not os.path.lexists(bad) and _set_aside(table) == ["planted.json"]


def _set_aside(table: ResultsTable) -> list[str]:
    """Names of the row files moved under ``results/rejected/``."""
    return sorted(p.name for p in table.rejected_dir.rglob("*.json*") if os.path.lexists(p))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["fifo", "devzero"])
def test_an_endless_results_view_is_refused_naming_it(tmp_path, capsys, how):
    storage = tmp_path / "runs"
    view = storage / "quickstart" / "results.jsonl"
    _plant_endless(view, how)
    assert main(["leaderboard", str(QUICKSTART), f"storage={storage}"]) == 2
    err = _one_line(capsys)
    assert f"results view {view} is a" in err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["fifo", "devzero", "huge"])
def test_an_endless_or_huge_scores_file_is_refused_without_hanging(tmp_path, how):
    store = CheckpointStore(tmp_path / "runs", "quickstart")
    path = store.scores_dir / f"{TRAJ}.json"
    if how == "huge":  # sparse: refused by its size, never read
        path.parent.mkdir(parents=True)
        with open(path, "wb") as fh:
            fh.truncate(JSON_MAX_BYTES + 1)
    else:
        _plant_endless(path, how)
    with pytest.raises(ScoresError) as e:
        read_scores(store, TRAJ)
    assert str(path) in str(e.value) and len(str(e.value).splitlines()) == 1
    assert read_all_scores(store) == {}  # the report leaves it out


# ----------------------------------------------------------------------------- fault 10: `~`


def test_home_in_path_keys_is_expanded(tmp_path, monkeypatch, capsys):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    cfg = load_config(QUICKSTART, ["storage=~/x", "data.root=~/data"])
    assert (cfg.storage, cfg.data.root) == (str(home / "x"), str(home / "data"))
    main(["leaderboard", str(QUICKSTART), "storage=~/x"])  # an empty store: refused or not, it logs
    capsys.readouterr()
    assert (home / "x" / "quickstart" / "logs" / "leaderboard.log").is_file()
    assert not (cwd / "~").exists()


# ----------------------------------------------------------------------------- fault 11: decode, shape, names


BAD_JSON = {
    "not-utf8": b'{"finished": true, "name": "\xff\xfe"}',
    "not-json": b'{"finished": tr',
    "a-list": b"[1, 2]",
    "deeply-nested": b"[" * 200_000,
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "content",
    [
        *BAD_JSON.values(),
        b'{"finished": true, "checkpoints": 5}',
        b'{"finished": true, "checkpoints": [{"epoch": 1, "file": "../../../precious", "sha256": "0"}]}',
    ],
    ids=[*BAD_JSON, "checkpoints-not-a-list", "file-outside-folder"],
)
def test_a_bad_manifest_is_one_line_naming_it(tmp_path, capsys, content):
    storage = tmp_path / "runs"
    manifest = storage / "quickstart" / "trajectories" / TRAJ / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(content)
    assert main(_teachers(storage)) == 2
    err = _one_line(capsys)
    assert f"manifest {manifest}" in err and "delete the trajectory folder" in err
    assert manifest.read_bytes() == content  # refused, not rewritten


@pytest.mark.parametrize("content", BAD_JSON.values(), ids=BAD_JSON)
def test_a_bad_scores_file_is_one_line_naming_it(tmp_path, content):
    store = CheckpointStore(tmp_path / "runs", "quickstart")
    path = store.scores_dir / f"{TRAJ}.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(ScoresError) as e:
        read_scores(store, TRAJ)
    assert f"scores file {path}" in str(e.value) and "ckd score" in str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_a_non_utf8_row_file_is_set_aside(tmp_path):
    table = ResultsTable(tmp_path / "quickstart")
    table.rows_dir.mkdir(parents=True)
    (table.rows_dir / "bad.json").write_bytes(b'{"run_id": "bad", "x": "\xff"}\n')
    assert table.read() == [] and table.compact() == 0
    assert _set_aside(table) == ["bad.json"]


def test_a_checkpoint_link_is_refused(tmp_path, outside):
    with pytest.raises(StoredFileError, match="symbolic link"):
        read_regular_bytes(_link(tmp_path / "ckpt-e0001.pt", outside), 1 << 20, "checkpoint")
    store = CheckpointStore(tmp_path / "runs", "quickstart")
    traj = store.trajectory(TRAJ)
    traj.write_manifest({"finished": True, "checkpoints": [{"epoch": 1, "file": "ckpt-e0001.pt", "sha256": "0"}]})
    _link(traj.checkpoint_path(1), outside)
    with pytest.raises(StoreError, match="symbolic link"):
        traj.load_checkpoint(1)
    assert outside.read_bytes() == PRECIOUS


def _link(path: Path, target: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def test_a_300_character_name_is_one_line(tmp_path, capsys):
    storage = tmp_path / "runs"
    assert main(_teachers(storage, "name=" + "n" * 300)) == 2
    err = _one_line(capsys)
    assert "config key 'name'" in err
    assert not storage.exists() or not any(storage.rglob("n" * 300))


def test_a_300_character_storage_folder_is_one_line(tmp_path, capsys):
    storage = tmp_path / ("s" * 300) / "runs"
    assert main(["leaderboard", str(QUICKSTART), f"storage={storage}"]) == 2
    err = _one_line(capsys)
    assert "too long for the file system" in err and "s" * 300 in err


# ----------------------------------------------------------------------------- fault 11: full disk, size limit


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 256 KiB file system (mount needs root); skipped where mounting is not allowed."""
    target = tmp_path / "fs"
    target.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(target)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield target
    subprocess.run(["umount", str(target)], capture_output=True)


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.timeout(120)
def test_a_full_disk_is_one_line_naming_the_file(small_tmpfs, capsys, monkeypatch):
    monkeypatch.setattr(experiment, "MIN_FREE_BYTES", 0)  # let the run start on a nearly full disk
    old = small_tmpfs / "kept.bin"
    atomic_write_bytes(old, b"old")
    with pytest.raises(OSError) as e:  # the primitive: the write fails naming the file, the old one stays
        atomic_write_bytes(old, b"x" * (1 << 20))
    assert e.value.filename == str(old) and old.read_bytes() == b"old" and not _temps(small_tmpfs)
    assert main(_teachers(small_tmpfs / "runs")) == 2
    err = _one_line(capsys)
    assert "no space left on the device holding" in err and str(small_tmpfs) in err
    assert not _temps(small_tmpfs)  # nothing half written


@pytest.mark.timeout(180)
def test_a_file_size_limit_is_one_line_naming_the_file(tmp_path):
    storage = tmp_path / "runs"
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # Python ignores SIGXFSZ: EFBIG
        from harness.cli import main
        sys.exit(main({json.dumps(_teachers(storage))}))
        """
    )
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and err[-1].startswith("ckd teachers: error: ")
    assert "would exceed the largest file allowed here" in err[-1] and str(storage) in err[-1]
    assert not _temps(storage)


def test_a_log_file_on_a_full_disk_warns_once_and_the_run_goes_on(small_tmpfs, capsys):
    log = small_tmpfs / "logs" / "x.log"
    with file_log(log):
        with open(small_tmpfs / "filler", "wb", buffering=0) as fh, pytest.raises(OSError):
            while True:
                fh.write(b"x" * 4096)
        for n in range(3):
            logging.getLogger("harness.test").info(f"line {n} " + "x" * 8192)
    err = capsys.readouterr().err
    assert err.count(f"cannot write log file {log} (No space left on device)") == 1 and "Traceback" not in err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["fifo", "devzero"])
def test_an_endless_data_cache_or_trial_state_is_never_read(tmp_path, how):
    """The MNIST-1D cache's metadata regenerates; a Tune trial's state is refused naming it."""
    from harness.data.mnist1d import read_cache

    meta = tmp_path / "cache" / "meta.json"
    _plant_endless(meta, how)
    assert read_cache(tmp_path / "cache" / "x.npz", meta, {"n": 1}) is None  # the caller regenerates
    sweep = pytest.importorskip("harness.cluster.trainable")  # needs Ray
    state = tmp_path / "trial" / sweep.STATE_FILE
    _plant_endless(state, how)
    with pytest.raises(StoreError, match="trial state"):
        sweep.read_trial_state(state)
