"""One failure stays one failure: runs that cannot train are skipped before launch with their
reason, a member that fails in its pack fails alone, deterministic errors are not retried, the
report lists what did not train and the exit status says so. Real training on a tiny store:
two trajectories (s0, s1); s1's last checkpoint is corrupted (a deterministic failure of the
``full`` run of s1) and ``teacher.seeds`` names a third (s2) that was never trained (a missing
teacher: its ``full`` run is skipped before launch)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from harness import failures, pipeline
from harness.config_loading import load_config
from tests.helpers import QUICKSTART, tiny_overrides

SWEEP = {
    "teacher.seeds": "[0,1,2]",
    "sweep.seeds": "[0,1,2]",
    "sweep.teacher_choices": "[none,full]",
    "scoring.estimators": "[accuracy]",
}


def _cfg(storage: Path, **extra):
    return load_config(QUICKSTART, tiny_overrides(storage, **{**SWEEP, **extra}))


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> Path:
    """A store with trajectories s0 and s1 trained (in this process); s1's last checkpoint corrupt."""
    storage = tmp_path_factory.mktemp("isolation") / "runs"
    pipeline.teachers(_cfg(storage, **{"teacher.seeds": "[0,1]", "cluster.mode": "local"}))
    _corrupt(storage / "quickstart" / "trajectories" / "cnn1d_small-mnist1d-s1" / "ckpt-e0004.pt")
    return storage


def _copy(teachers: Path, tmp_path: Path) -> Path:
    storage = tmp_path / "runs"
    shutil.copytree(teachers, storage)
    return storage


def _records(storage: Path) -> dict[str, dict]:
    return {e["label"]: e for e in failures.read_failures(storage / "quickstart")}


def _check_outcome(storage: Path, rows: list[dict]) -> None:
    """Every run that can train did (the pack-mate of the failed run included); the failed run
    has its traceback in the experiment's folder; the missing teacher's run was skipped."""
    trained = {failures.run_label(r) for r in rows}
    assert trained == {"none/mlp_small/s0", "none/mlp_small/s1", "none/mlp_small/s2", "full/mlp_small/s0"}
    records = _records(storage)
    assert set(records) == {"full/mlp_small/s1", "full/mlp_small/s2"}
    failed, skipped = records["full/mlp_small/s1"], records["full/mlp_small/s2"]
    assert failed["status"] == "failed" and failed["deterministic"] and "sha256" in failed["reason"]
    log = storage / "quickstart" / failed["log"]
    assert log.is_file() and "Traceback" in log.read_text()
    assert skipped["status"] == "skipped" and "ckd teachers" in skipped["reason"] and skipped["log"] is None


def test_in_process_sweep_skips_isolates_and_reports(teachers, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="harness")
    storage = _copy(teachers, tmp_path)
    cfg = _cfg(storage, **{"cluster.mode": "local", "sweep.pack_size": 3})
    rows = pipeline.sweep(cfg)
    assert rows.exit_status == pipeline.INCOMPLETE
    _check_outcome(storage, rows)
    text = caplog.text
    assert "skipped 1 run(s) before launch, full/mlp_small/s2" in text
    assert "a pack of 2 failed" in text  # full s0 + s1 packed; s1's error sent each member alone
    assert text.count("FAILED full/mlp_small/s1") == 2  # where it happened, and in the summary
    assert "waiting for" not in text  # a failed run is not mistaken for one another process trains

    rep = pipeline._report(cfg, plots=False)  # the report lists them (ckd run's exit status: 3)
    assert pipeline.untrained_status(cfg, rep.not_trained, say_each=False) == pipeline.INCOMPLETE
    assert "2 run(s) did not train (1 skipped, 1 failed)" in rep.text
    root = storage / "quickstart"
    assert "## Runs that did not train" in (root / "leaderboard.md").read_text()
    assert (root / "not_trained.csv").read_text().count("\n") == 3
    assert "Runs that did not train" in (root / "leaderboard.html").read_text()


def test_a_run_that_trains_later_loses_its_record(teachers, tmp_path):
    storage = _copy(teachers, tmp_path)
    cfg = _cfg(storage, **{"cluster.mode": "local", "teacher.seeds": "[0,1]", "sweep.seeds": "[0]"})
    root = storage / "quickstart"
    failures.record(root, {"teacher_choice": "full", "student_arch": "mlp_small", "seed": 0}, "skipped", "old")
    run = next(r for r in pipeline.sweep(cfg) if r["teacher_choice"] == "full")
    assert run["seed"] == 0 and failures.read_failures(root, [run]) == []


def test_failure_records_round_trip_and_classify(tmp_path):
    run = {"teacher_choice": "selected:paper", "student_arch": "mlp_small", "seed": 3, "temperature": 4.0}
    entry = failures.record(tmp_path, run, "skipped", "selector paper is\n degenerate")
    assert entry["label"] == "selected:paper/mlp_small/s3" and entry["reason"] == "selector paper is degenerate"
    try:
        raise RuntimeError("boom")
    except RuntimeError as e:
        other = failures.record(tmp_path, {**run, "seed": 4}, "failed", "boom", error=e)
    assert (tmp_path / other["log"]).read_text().startswith("selected:paper/mlp_small/s4: boom")
    assert [e["status"] for e in failures.read_failures(tmp_path)] == ["skipped", "failed"]
    assert failures.read_failures(tmp_path, [run]) == [entry]
    assert failures.clear(tmp_path, [run, {**run, "seed": 4}], status="skipped") == 1
    assert failures.clear(tmp_path, [{**run, "seed": 4}]) == 1 and not list(tmp_path.glob("failures/*"))
    with pytest.raises(ValueError, match="failure status"):
        failures.record(tmp_path, run, "lost", "x")
    assert failures.is_deterministic(ValueError("bad choice"))
    assert not failures.is_deterministic(ConnectionError("node lost"))
    assert not failures.is_deterministic(RuntimeError("CUDA out of memory"))
    assert not failures.is_deterministic(failures.RunFailure("flaky", deterministic=False))


# ------------------------------------------------------------------ the same on Ray, with Tune


@pytest.mark.timeout(300)
def test_on_ray_a_member_fails_alone_without_retries_and_tune_rows_are_runs(teachers, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray
    from ray.tune import ExperimentAnalysis

    from harness.cluster.tune_runs import runs_frame

    monkeypatch.delenv("WANDB_MODE", raising=False)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    storage = _copy(teachers, tmp_path)
    cfg = _cfg(storage, **{"sweep.pack_size": 3, "sweep.max_failures": 2, "tracking.mode": "offline"})
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        rows = pipeline.sweep(cfg)
    finally:
        ray.shutdown()
    assert rows.exit_status == pipeline.INCOMPLETE
    _check_outcome(storage, rows)

    (experiment,) = (storage / "quickstart" / "tune").glob("sweep-*")
    analysis = ExperimentAnalysis(str(experiment))
    assert all(t.num_failures == 0 for t in analysis.trials)  # a deterministic error is not retried
    names = sorted(str(t).rsplit("-", 1)[0] for t in analysis.trials)  # named for what they hold, then the id
    assert names == ["mlp_small-2runs-full-s0-1", "mlp_small-3runs-none-s0-2"], names
    frame = runs_frame(analysis)  # one row per run, each with its own config and metrics
    assert sorted(frame["label"]) == sorted(
        ["none/mlp_small/s0", "none/mlp_small/s1", "none/mlp_small/s2", "full/mlp_small/s0", "full/mlp_small/s1"]
    )
    by_label = frame.set_index("label")
    assert bool(by_label.loc["full/mlp_small/s1", "failed"]) and not bool(by_label.loc["full/mlp_small/s0", "failed"])
    ok = by_label.drop(index="full/mlp_small/s1")
    assert set(ok["run_id"]) == {r["run_id"] for r in rows}
    assert (ok["teacher_choice"] == ok.index.str.split("/").str[0]).all()
    assert ok.loc["full/mlp_small/s0", "teachers"] == "cnn1d_small-mnist1d-s0:4"

    wandb_runs = sorted((storage / "quickstart" / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 5  # one W&B run per student, named <choice>/<student>/s<seed>
    blobs = b"".join(next(d.glob("run-*.wandb")).read_bytes() for d in wandb_runs)
    for label in ("none/mlp_small/s0", "none/mlp_small/s2", "full/mlp_small/s0", "full/mlp_small/s1"):
        assert label.encode() in blobs
    assert b"run_id" in blobs and b"num_samples" in blobs and b"failed" in blobs  # the whole config rode along


@pytest.mark.timeout(300)
def test_ckd_run_on_ray_skips_a_degenerate_selection_before_launch(tmp_path, monkeypatch, capsys):
    """The issue's case on the overlapped path (students start as their teachers are scored): the
    binning selector is degenerate on short teachers, so its runs are never launched; the others
    train; the report lists the skips; the exit status is 3; no traceback on the console."""
    pytest.importorskip("ray")
    from harness.cli import main

    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    overrides = tiny_overrides(
        tmp_path / "runs",
        **{
            "teacher.seeds": "[0,1]",
            "sweep.seeds": "[0,1]",
            "sweep.teacher_choices": '["full","selected:binning"]',
            "scoring.estimators": "[binning]",
        },
    )
    assert main(["run", str(QUICKSTART), *overrides]) == pipeline.INCOMPLETE
    out, err = capsys.readouterr()
    records = _records(tmp_path / "runs")
    assert set(records) == {"selected:binning/mlp_small/s0", "selected:binning/mlp_small/s1"}
    assert all(r["status"] == "skipped" and "degenerate" in r["reason"] for r in records.values())
    assert "2 run(s) did not train (2 skipped, 0 failed)" in out and "full" in out  # the leaderboard is there
    assert "Traceback" not in err
    assert err.count("skipped 1 run(s) before launch, selected:binning") == 2  # once per run, when it was skipped
    rows = pipeline.open_store(load_config(QUICKSTART, overrides)).read_results()
    assert sorted(failures.run_label(r) for r in rows) == ["full/mlp_small/s0", "full/mlp_small/s1"]
