"""W&B adapter: disabled is a free no-op, per-trial tags on the Tune callback, one offline smoke test."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness import tracking, tracking_tables

ROOT = Path(__file__).resolve().parents[1]


def cfg_for(tmp_path: Path, mode: str):
    return OmegaConf.create(
        {
            "name": "exp",
            "storage": str(tmp_path / "runs"),
            "tracking": {"mode": mode, "project": "ckd-test", "entity": None},
        }
    )


def manifest() -> dict:
    return {
        "name": "cnn1d_small-mnist1d-s0",
        "arch": "cnn1d_small",
        "dataset": "mnist1d",
        "seed": 0,
        "epochs": 4,
        "finished": True,
        "config_hash": "abc",
        "wall_time_s": 1.5,
        "history": [
            {
                "epoch": e,
                "lr": 0.1,
                "train_loss_running": 1.0 / e,
                "train_acc_running": 0.4 + e / 10,
                "val_acc": 0.4 + e / 10,
                "seconds": 0.1,
            }
            for e in range(1, 5)
        ],
        "checkpoints": [
            {
                "epoch": e,
                "train_acc": 0.5,
                "val_acc": 0.6,
                "test_acc": 0.6 + e / 100,
                "train_loss": 0.5,
                "train_confidence": 0.7,
                "sha256": "ab" * 32,
                "file": f"ckpt-e{e:04d}.pt",
            }
            for e in (2, 4)
        ],
    }


def test_disabled_is_a_no_op_that_imports_nothing_heavy(tmp_path):
    code = f"""
import sys
from omegaconf import OmegaConf
from harness import tracking, tracking_tables
tracking_cfg = {{"mode": "disabled", "project": "p", "entity": None}}
cfg = OmegaConf.create({{"name": "exp", "storage": {str(tmp_path / "runs")!r}, "tracking": tracking_cfg}})
assert tracking.log_student_run(cfg, "t", {{"teacher_choice": "none"}}, [{{"epoch": 1}}]) is None
assert tracking.log_trajectory(cfg, {{"name": "t", "history": [{{"epoch": 1, "val_acc": 0.5}}]}}) is None
assert tracking_tables.log_scores(cfg, {{"checkpoints": [{{"epoch": 1}}]}}, "t") is None
assert tracking_tables.log_leaderboard(cfg, [{{"teacher_choice": "none"}}]) is None
assert tracking.offline_run_dirs(cfg) == [] and tracking.sync_command(cfg) is None
heavy = [m for m in ("wandb", "ray", "torch", "matplotlib") if m in sys.modules]
assert not heavy, heavy
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "runs").exists()  # nothing written either


def test_env_can_only_make_tracking_stricter(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.tracking_mode(cfg_for(tmp_path, "offline")) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert tracking.tracking_mode(cfg_for(tmp_path, "online")) == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert tracking.tracking_mode(cfg_for(tmp_path, "offline")) == "offline"
    monkeypatch.delenv("WANDB_MODE")
    assert tracking.tracking_mode(cfg_for(tmp_path, "disabled")) == "disabled"
    with pytest.raises(ValueError, match="tracking.mode"):
        tracking.tracking_mode(cfg_for(tmp_path, "sometimes"))


def test_wandb_dir_and_init_kwargs_stay_under_the_storage_path(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = cfg_for(tmp_path, "offline")
    d = tracking.wandb_dir(cfg)
    assert d == (tmp_path / "runs" / "exp" / "wandb").resolve() and d.is_dir()
    kw = tracking.init_kwargs(cfg, job_type="x")
    assert Path(kw["dir"]) / "wandb" == d  # wandb.init(dir=...) writes into <dir>/wandb
    assert kw["mode"] == "offline" and kw["group"] == "exp" and kw["project"] == "ckd-test" and "entity" not in kw
    assert kw["settings"]["x_disable_stats"] and kw["settings"]["silent"] and kw["job_type"] == "x"


def test_trial_tags_from_config_keys_and_wandb_key():
    config = {"distill": {"teacher_choice": "snapshot:[0.5,1.0]", "seed": 1}, "wandb": {"tags": ["extra", "sweep"]}}
    assert tracking.trial_tags(config, base=["sweep"]) == ["sweep", "snapshot:[0.5,1.0]", "extra"]
    assert tracking.trial_tags({"teacher_choice": "x" * 100}) == ["x" * 64]  # W&B's tag length limit
    assert tracking.trial_tags({"a": 1}, tag_keys=("distill.teacher_choice",)) == []


def all_records(run_dirs, expected: tuple[bytes, ...], timeout_s: float = 60.0) -> bytes:
    """The record logs of several runs, joined; waits (bounded) until ``expected`` are all in them."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = b"".join(next(Path(d).glob("run-*.wandb")).read_bytes() for d in run_dirs)
        if all(e in records for e in expected) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def wandb_records(run_dir: Path, expected: tuple[bytes, ...], timeout_s: float = 60.0) -> bytes:
    """W&B's own record log of a run. Its service process may still be flushing it after
    ``run.finish()`` returns on a loaded machine, so wait (bounded) until ``expected`` is in it."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = next(run_dir.glob("run-*.wandb")).read_bytes()
        if all(e in records for e in expected) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def test_a_student_run_is_written_in_one_go_with_its_tags_and_curve(tmp_path, monkeypatch):
    """One W&B offline run per trial: config, per-epoch steps, tags (teacher choice + the trial
    config's wandb.tags), written by the driver when the trial ends; nothing when disabled."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert tracking.log_student_run(cfg_for(tmp_path, "disabled"), "t0", {"teacher_choice": "full"}, []) is None
    cfg = cfg_for(tmp_path, "offline")
    history = [{"epoch": e, "val_acc": 0.5 + e / 100, "test_acc": 0.4} for e in (1, 2, 3)]
    run_dir = tracking.log_student_run(
        cfg,
        "full-T4-s0",
        {"teacher_choice": "full", "temperature": 4.0, "wandb": {"tags": ["sweep"], "notes": "n"}},
        history,
    )
    assert run_dir is not None and tracking.wandb_dir(cfg) in run_dir.parents
    again = tracking.log_student_run(cfg, "full-T4-s1", {"teacher_choice": "epoch:20"}, history[:1], failed=True)
    assert again is not None and again != run_dir  # every trial is its own run
    records = wandb_records(run_dir, (b"full-T4-s0", b"student", b"sweep", b"temperature", b"val_acc", b"0.53"))
    for expected in (b"full-T4-s0", b"student", b"sweep", b"temperature", b"val_acc", b"0.53"):
        assert expected in records, expected
    again_records = wandb_records(again, (b"epoch:20", b"failed"))
    assert b"epoch:20" in again_records and b"failed" in again_records
    assert tracking.trial_tags({"teacher_choice": "full", "wandb": {"tags": ["sweep"]}}, base=["x"]) == [
        "x",
        "full",
        "sweep",
    ]


def test_the_sweep_callback_logs_one_live_run_per_member(tmp_path, monkeypatch):
    """StudentRuns (driver side): each member of a trial's pack gets its own W&B run named
    <choice>/<student>/s<seed>, logged at every reported epoch, closed when the trial ends (tagged
    failed when it failed); a broken result is logged, never raised; pickling drops open runs."""
    pytest.importorskip("ray")
    from harness.cluster.sweep_tracking import StudentRuns

    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = cfg_for(tmp_path, "offline")
    cb = StudentRuns(cfg)
    grid = [{"teacher_choice": c, "student_arch": "mlp_small", "seed": 0} for c in ("none", "full")]
    pack = types.SimpleNamespace(trial_id="t0", config={"runs": grid}, last_result=None)
    single = types.SimpleNamespace(trial_id="t1", config={"run": {**grid[1], "seed": 1}}, last_result=None)
    for e in (1, 2):
        members = {str(i): {"epoch": e, "val_acc": 0.5 + e / 100, "run_id": f"r{i}"} for i in range(2)}
        cb.on_trial_result(0, [], pack, {"epoch": e, "runs": members})
        cb.on_trial_result(0, [], single, {"epoch": e, "runs": {"0": {"epoch": e, "val_acc": 0.4}}})
    assert sorted(run.name for run in cb.live.open.values()) == [
        "full/mlp_small/s0",
        "full/mlp_small/s1",
        "none/mlp_small/s0",
    ]
    cb.on_trial_result(0, [], pack, {"runs": {"0": "not a dict"}})  # logged as a warning, not raised
    assert pickle.loads(pickle.dumps(cb)).runs is None
    cb.on_trial_complete(0, [], pack)
    cb.on_trial_error(0, [], single)
    assert cb.live.open == {}
    dirs = tracking.offline_run_dirs(cfg)
    assert len(dirs) == 3
    blobs = {d: wandb_records(d, (b"mlp_small",)) for d in dirs}
    failed = [d for d, b in blobs.items() if b"full/mlp_small/s1" in b]
    assert len(failed) == 1 and b"failed" in blobs[failed[0]]
    assert any(b"none/mlp_small/s0" in b and b"val_acc" in b and b"run_id" in b for b in blobs.values())


def test_a_wandb_failure_is_logged_and_does_not_stop_the_pipeline(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="harness")
    monkeypatch.delenv("WANDB_MODE", raising=False)

    def init(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    cfg = cfg_for(tmp_path, "offline")
    assert tracking.log_trajectory(cfg, manifest()) is None
    assert caplog.messages == [
        "[tracking] W&B logging of trajectory-cnn1d_small-mnist1d-s0 failed (RuntimeError: boom); continuing without it"
    ]
    assert caplog.records[0].name == "harness.tracking"
    assert not list((tracking.wandb_dir(cfg) / ".logged").glob("*"))  # not marked as logged: tried again next time


def test_offline_smoke_writes_run_folders_without_network(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="harness")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # any attempt to reach a server would fail
    cfg = cfg_for(tmp_path, "offline")
    run = tracking.log_trajectory(cfg, manifest())
    assert run is not None and "[tracking]" not in caplog.text, caplog.text
    runs = tracking.offline_run_dirs(cfg)
    assert runs == [run] and run.parent == tracking.wandb_dir(cfg) and run.name.startswith("offline-run-")
    assert list(run.glob("run-*.wandb")) and list(run.glob("files/media/table/checkpoints_*.table.json"))
    table = json.loads(next(run.glob("files/media/table/checkpoints_*.table.json")).read_text())
    assert table["columns"][:2] == ["epoch", "test_acc"] and [r[0] for r in table["data"]] == [2, 4]

    assert tracking.log_trajectory(cfg, manifest()) is None  # logged already: no duplicate run
    scores = {"trajectory": "t", "checkpoints": [{"epoch": 2, "kde": {"i_x": 1.5}}, {"epoch": 4, "kde": {"i_x": 2.0}}]}
    scores_run = tracking_tables.log_scores(cfg, scores, "cnn1d_small-mnist1d-s0")
    table = json.loads(next(scores_run.glob("files/media/table/scores_*.table.json")).read_text())
    assert table["columns"] == ["epoch", "kde.i_x"] and table["data"] == [[2, 1.5], [4, 2.0]]  # nested keys flattened
    board = [
        {
            "dataset": "mnist1d",
            "teacher_arch": None,
            "student_arch": "mlp_small",
            "teacher_choice": "none",
            "test_mean": 0.7,
            "test_std": None,
            "n": 1,
            "reported": "final",
            "seeds": [0],
        }
    ]
    board_run = tracking_tables.log_leaderboard(cfg, board)
    table = json.loads(next(board_run.glob("files/media/table/leaderboard_*.table.json")).read_text())
    row = dict(zip(table["columns"], table["data"][0]))
    assert row["test_mean"] == pytest.approx(70.0) and row["teacher_choice"] == "none"  # accuracies in percent
    assert tracking_tables.log_leaderboard(cfg, board) is None  # logged already
    assert len(tracking.offline_run_dirs(cfg)) == 3
    assert tracking.sync_command(cfg).startswith(f"wandb sync {tracking.wandb_dir(cfg)}/offline-run-*")
    assert tracking.report_offline_runs(cfg) == tracking.offline_run_dirs(cfg)
    assert f"[tracking] 3 W&B offline run(s) in {tracking.wandb_dir(cfg)}; upload with:" in caplog.text


def test_local_students_get_their_wandb_runs_once(tmp_path, monkeypatch):
    """``ckd run --local`` and ``ckd distill``: one W&B offline run per student trained in this
    process, named <choice>/<student>/s<seed> and logged epoch by epoch (as on Ray); a re-run
    logs no student again."""
    from harness.cli import main
    from harness.config_loading import load_config
    from harness.experiment import open_store
    from tests.helpers import QUICKSTART, tiny_overrides

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # any attempt to reach a server would fail
    overrides = tiny_overrides(
        tmp_path / "runs",
        **{
            "teacher.seeds": "[0]",
            "sweep.seeds": "[0]",
            "sweep.teacher_choices": '["none","full"]',
            "scoring.estimators": "[accuracy]",
            "tracking.mode": "offline",
        },
    )
    assert main(["run", str(QUICKSTART), "--local", *overrides]) == 0
    cfg = load_config(QUICKSTART, overrides)
    rows = open_store(cfg).read_results()
    assert len(rows) == 2
    first = set(tracking.offline_run_dirs(cfg))
    names = all_records(first, (b"none/mlp_small/s0", b"full/mlp_small/s0", b"cnn1d_small-mnist1d-s0"))
    assert b"none/mlp_small/s0" in names and b"full/mlp_small/s0" in names
    assert main(["sweep", str(QUICKSTART), "--local", *overrides]) == 0  # all trained already: nothing new
    assert set(tracking.offline_run_dirs(cfg)) == first
    assert main(["distill", str(QUICKSTART), *overrides, "teacher_choice=full", "seed=7"]) == 0
    (new,) = set(tracking.offline_run_dirs(cfg)) - first
    assert b"full/mlp_small/s7" in wandb_records(new, (b"full/mlp_small/s7",))
