"""Outputs on an object store (``storage=s3://...``, moto's S3 server): the report files, log
files, failure records, stage times, ``ckd compare`` and W&B offline runs land as objects, the same
bytes as on a folder where the content does not depend on where it is."""

from __future__ import annotations

import logging

import pytest

from harness import failures, tracking
from harness.cli import main
from harness.fileio import atomic_write_json
from harness.logs import ObjectLog, file_log
from harness.objects import ObjectPath, storage_location
from harness.report.html import stage_times
from harness.report.report import write_report
from harness.store import CheckpointStore
from tests.helpers import QUICKSTART
from tests.synthetic_results import fill_store, planted_rows
from tests.test_report import TRAJ0, TRAJ1, _manifest, experiment, row

log = logging.getLogger("harness.test_object_outputs")


def _rows() -> list[dict]:
    """Rows with an interval (two trajectories) and epochs, so that plots are drawn too."""
    out = [row("none", s, 0.61 + s / 100, 0.60 + s / 50) for s in range(2)]
    for s, traj in enumerate((TRAJ0, TRAJ1)):
        out += [row(f"epoch:{e}", s, 0.7 + e / 1000, 0.7 + e / 900 + s / 100, ckpts=[(traj, e)]) for e in (10, 20)]
        out += [row("full", s, 0.71, 0.72 + s / 100, ckpts=[(traj, 20)])]
    return out


def _fill(storage) -> CheckpointStore:
    store = CheckpointStore(storage, "exp")
    for i, name in enumerate((TRAJ0, TRAJ1)):
        atomic_write_json(store.trajectory(name).manifest_path, _manifest(name, i))
    for r in _rows():
        store.append_result(r)
    return store


def test_the_report_on_s3_writes_the_same_files_as_on_a_folder(s3_storage, tmp_path):
    here, there = _fill(tmp_path), _fill(s3_storage)
    assert isinstance(there.root, ObjectPath)
    local, remote = write_report(experiment(tmp_path), latex=True), write_report(experiment(s3_storage), latex=True)
    assert len(remote.board) == len(local.board) == 4 and remote.plots, "the s3 report drew no plot"
    assert [p.name for p in remote.plots] == [p.name for p in local.plots]
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "claims.md", "selectors.csv"):
        assert (there.root / name).read_bytes() == (here.root / name).read_bytes(), name
    for p in remote.plots:
        assert isinstance(p, ObjectPath) and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (there.root / "leaderboard.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == len(remote.plots)


def test_stage_times_on_s3_are_read_by_the_html_report(s3_storage):
    from harness.pipeline import _store_stage_times

    cfg = experiment(s3_storage)
    assert stage_times(cfg).startswith("no ckd run recorded")
    _store_stage_times(cfg, {"teachers": 1.5, "sweep": 2.0}, 4.0)
    assert isinstance(CheckpointStore(s3_storage, "exp").root / "logs", ObjectPath)
    assert stage_times(cfg).startswith("teachers 1.5 s, sweep 2.0 s; total 4.0 s")


def _text(path: ObjectPath) -> str:
    return path.read_bytes().decode()


def test_file_log_on_s3_uploads_a_new_object_per_block(s3_storage):
    requested = storage_location(s3_storage) / "exp" / "logs" / "run.log"
    with file_log(requested) as first:
        log.info("first block line")
    with file_log(str(requested)) as second:  # a URI string works as well
        log.info("second block line")
    assert first != second and first.parent == second.parent == requested.parent
    assert first.name.startswith("run.") and first.name.endswith(".log") and not requested.exists()
    assert "first block line" in _text(first) and "second block line" not in _text(first)
    assert "second block line" in _text(second)
    assert sorted(requested.parent.glob("run.*.log")) == sorted([first, second])


def test_file_log_on_s3_uploads_on_an_exception_and_removes_the_temp_file(s3_storage):
    requested = storage_location(s3_storage) / "logs" / "sweep.log"
    with pytest.raises(RuntimeError, match="boom"), file_log(requested) as target:
        log.warning("before the error")
        raise RuntimeError("boom")
    assert "before the error" in _text(target)
    uploader = ObjectLog(requested, every_s=0)
    with uploader:  # the periodic upload: what is written so far, then the rest on exit
        uploader.local.write_text("line 1\n")
        uploader.upload()
        assert _text(uploader.target) == "line 1\n"
        uploader.local.write_text("line 1\nline 2\n")
    assert _text(uploader.target) == "line 1\nline 2\n" and not uploader.local.exists()
    assert uploader.target != target  # never another block's object


def test_failure_records_on_s3(s3_storage):
    root = CheckpointStore(s3_storage, "exp").root
    run = {"teacher_choice": "full", "student_arch": "mlp_small", "seed": 3, "teacher_arch": "cnn1d_small"}
    other = {**run, "seed": 4}
    try:
        raise ValueError("bad shape")
    except ValueError as e:
        failures.record(root, run, "failed", "ValueError: bad shape", error=e)
    failures.record(root, other, "skipped", "no teacher")
    got = failures.read_failures(root)
    assert [(e["status"], e["label"]) for e in got] == [
        ("skipped", "full/mlp_small/s4"),
        ("failed", "full/mlp_small/s3"),
    ]
    log_object = root / got[1]["log"]
    assert isinstance(log_object, ObjectPath) and "bad shape" in _text(log_object)
    assert failures.clear(root, [run]) == 1 and not log_object.exists()
    assert [e["label"] for e in failures.read_failures(root)] == ["full/mlp_small/s4"]


def test_compare_reads_and_writes_object_stores(s3_storage, capsys):
    a, b = s3_storage, s3_storage.replace("/runs", "/other")
    rows = planted_rows({10: 0.0}, {}, n_traj=2, n_seeds=2)
    fill_store(CheckpointStore(a, "quickstart"), rows)
    fill_store(CheckpointStore(b, "quickstart"), rows)
    out = f"{s3_storage}/compare-out"
    assert main(["compare", f"{a}/quickstart", f"{b}/quickstart", "--out", out]) == 0
    assert "full" in capsys.readouterr().out
    assert "full" in _text(storage_location(out) / "compare.md")
    assert (storage_location(out) / "compare.csv").is_file()
    assert main(["compare", f"{a}/nothing", f"{b}/quickstart", "--out", out]) == 2  # no experiment there


def test_wandb_offline_runs_are_uploaded_under_the_experiment(s3_storage, monkeypatch, tmp_path):
    from tests.test_tracking import cfg_for, manifest

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # any attempt to reach a server would fail
    monkeypatch.setenv("CKD_NODE_CACHE", str(tmp_path / "node"))  # the node-local W&B folder
    cfg = cfg_for(tmp_path, "offline")
    cfg.storage = s3_storage
    local = tracking.wandb_dir(cfg)
    assert local.is_relative_to(tmp_path / "node" / "wandb") and local.name == "wandb"
    run = tracking.log_trajectory(cfg, manifest())
    stored = storage_location(s3_storage) / "exp" / "wandb"
    assert isinstance(run, ObjectPath) and run.parent == stored and run.name.startswith("offline-run-")
    assert list(run.glob("run-*.wandb")) and list((run / "files" / "media" / "table").glob("checkpoints_*.table.json"))
    assert not (local / run.name).exists()  # uploaded, then the local copy removed
    assert tracking.offline_run_dirs(cfg) == [run]
    assert tracking.log_trajectory(cfg, manifest()) is None  # the marker is in the store: no second run
    assert (stored / ".logged" / "trajectory-cnn1d_small-mnist1d-s0.json").is_file()
    assert tracking.sync_command(cfg).startswith(f"aws s3 cp --recursive {stored} wandb-exp && wandb sync wandb-exp/")
    down = tmp_path / "down"
    run.fs.get(stored.key + "/", str(down) + "/", recursive=True)  # what `aws s3 cp --recursive` does
    assert list(down.glob("offline-run-*/run-*.wandb"))


def test_the_cli_log_file_of_a_verb_on_s3(s3_storage, capsys):
    fill_store(CheckpointStore(s3_storage, "quickstart"), planted_rows({10: 0.0}, {}, n_traj=2, n_seeds=2))
    assert main(["leaderboard", str(QUICKSTART), f"storage={s3_storage}"]) == 0
    logs = sorted((storage_location(s3_storage) / "quickstart" / "logs").glob("leaderboard.*.log"))
    assert len(logs) == 1 and "[report]" in _text(logs[0])
