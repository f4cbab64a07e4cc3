"""The Ray layer on a real local cluster (``ray.init(num_cpus=2)``, shared by the module).

Trajectory actors (a killed actor restarts and resumes its trajectory), exhausted restarts, the
scorer actor, the Tune sweep (per-epoch reports + checkpoints, results.csv rows, every teacher
choice kind, resume with ``Tuner.restore`` after the driver dies, a killed trial resumed from
its checkpoint), W&B offline runs, ``ckd run`` end to end and its fast re-run.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.config import Scheduler, TrackingMode
from harness.config_loading import load_config
from harness.experiment import open_store
from harness.scoring.freshness import scores_fresh
from harness.sweep import sweep_runs
from tests.helpers import QUICKSTART, LogLines, tiny_overrides
from tests.helpers import wait_for as _wait_for

ray = pytest.importorskip("ray")
# harness.cluster imports ray, so these imports must follow the skip guard above (hence E402).
from harness.cluster.connection import ClusterInfo, ClusterSession, actor_resources, connect  # noqa: E402
from harness.cluster.errors import ClusterError  # noqa: E402
from harness.cluster.scoring import Scorer  # noqa: E402
from harness.cluster.sweep import run_sweep  # noqa: E402
from harness.cluster.teachers import TrajectoryRunner  # noqa: E402
from harness.verify import check_runs, check_scores, check_trajectories  # noqa: E402

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def _cfg(storage: Path, **extra):
    base = {
        "teacher.epochs": 15,  # three checkpoints (5, 10, 15): every_checkpoint is three runs
        "teacher.checkpoint_every": 5,
        "scoring.estimators": "[accuracy,ce_bound,kde]",
        "cluster.progress_interval_s": 1,
    }
    base.update(extra)
    return load_config(QUICKSTART, tiny_overrides(storage, **base))


@pytest.fixture(scope="module")
def trained(cluster, tmp_path_factory):
    """Two trajectories in actors; the actor of s0 is killed mid-run (Ray restarts it)."""
    storage = tmp_path_factory.mktemp("cluster") / "runs"
    session = ClusterSession(_cfg(storage))
    with LogLines() as lines:
        runner = TrajectoryRunner(session).start()
        victim = "cnn1d_small-mnist1d-s0"
        _wait_for(lambda: runner.progress().get(victim, {}).get("epoch", 0) >= 3)
        ray.kill(runner.actors[victim], no_restart=False)
        manifests = runner.wait()
    return {"session": session, "runner": runner, "manifests": manifests, "lines": lines, "victim": victim}


def test_connect_reports_resources_and_cpu_only(cluster, logs):
    cfg = load_config(QUICKSTART, ["cluster.trial.gpus=0.5"])
    info = connect(cfg)
    assert info.num_cpus == 2 and not info.multi_node
    assert "no GPUs" in logs.text and "gpus=0" in logs.text
    assert actor_resources(cfg, "trial", info) == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert actor_resources(cfg, "trial", info) == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert logs.text.count("cluster.trial.gpus=0.5") == 1  # said once, in the log
    big = load_config(QUICKSTART, ["cluster.trajectory.cpus=64"])
    started = ClusterInfo(None, True, 2.0, 0.0, info.nodes)
    with pytest.raises(ClusterError, match="cluster.trajectory.cpus"):
        actor_resources(big, "trajectory", started)


def test_device_auto_follows_rays_gpu_assignment(cluster, monkeypatch):
    """Ray 2.60 shows a GPU node's GPUs to num_gpus=0 workers; device=auto must still be the CPU
    there. Faked: CUDA is made to look available inside the worker and on the driver."""
    import torch

    from harness.training import resolve_device

    @ray.remote(num_gpus=0)
    def device_in_worker() -> str:
        import torch

        from harness.training import resolve_device

        torch.cuda.is_available = lambda: True  # a GPU node, as the worker sees it
        return str(resolve_device("auto"))

    assert ray.get(device_in_worker.remote()) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert str(resolve_device("auto")) == "cuda"  # the driver is not a Ray worker: whatever the machine has


def test_bad_address_fails_fast_with_a_message(monkeypatch, tmp_path, capsys):
    from harness.cli import main

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    began = time.time()
    rc = main(
        [
            "teachers",
            str(QUICKSTART),
            *tiny_overrides(tmp_path),
            "cluster.address=127.0.0.1:9",
            "cluster.connect_timeout_s=2",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and time.time() - began < 30
    assert "no Ray cluster answers at '127.0.0.1:9'" in err and "cluster.address" in err


def test_trajectories_train_in_actors_and_storage_is_absolute(trained):
    manifests = trained["manifests"]
    assert set(manifests) == {"cnn1d_small-mnist1d-s0", "cnn1d_small-mnist1d-s1"}
    store = open_store(trained["session"].cfg)
    assert Path(trained["session"].cfg.storage).is_absolute()
    for name, m in manifests.items():
        assert m["finished"] and [c["epoch"] for c in m["checkpoints"]] == [5, 10, 15]
        assert [h["epoch"] for h in m["history"]] == list(range(1, 16))  # every epoch exactly once
        assert store.trajectory(name).is_finished()
    text = trained["lines"].text()
    # one line for the stage per interval (the per-trajectory table is at debug level: -v)
    assert re.search(r"\[teachers\] [0-2]/2 finished, [0-2] running, [0-2] queued; \d+/30 epochs", text), text
    assert "[teachers] 2/2 finished, 0 running, 0 queued; 30/30 epochs" in text  # the closing line, no ETA


def test_killed_actor_restarts_and_resumes_from_its_last_epoch(trained):
    rows = trained["runner"].progress()
    attempts = rows[trained["victim"]]["attempts"]
    assert len(attempts) == 2, attempts  # the first incarnation + one restart
    assert attempts[0]["first_epoch"] == 1 and attempts[1]["first_epoch"] > 3  # resumed, not restarted from 0
    assert attempts[0]["pid"] != attempts[1]["pid"]
    log = (open_store(trained["session"].cfg).root / "logs" / f"{trained['victim']}.log").read_text()
    assert f"resuming after epoch {attempts[1]['first_epoch'] - 1}/15" in log
    assert len(rows["cnn1d_small-mnist1d-s1"]["attempts"]) == 1


def test_actor_with_no_restarts_left_fails_with_a_clear_message(cluster, tmp_path):
    session = ClusterSession(
        _cfg(tmp_path / "runs", **{"teacher.seeds": "[5]", "teacher.epochs": 40, "cluster.max_actor_restarts": 0})
    )
    runner = TrajectoryRunner(session).start()
    _wait_for(lambda: runner.progress().get("cnn1d_small-mnist1d-s5", {}).get("epoch", 0) >= 1)
    ray.kill(runner.actors["cnn1d_small-mnist1d-s5"], no_restart=False)
    with pytest.raises(ClusterError, match=r"cluster.max_actor_restarts=0 restarts are used up.*re-run to resume"):
        runner.wait()


def test_scorer_actor_holds_the_data_once_and_skips_fresh_scores(trained, logs):
    session = trained["session"]
    session.cfg.cluster.scorers = 1  # one actor scores both trajectories (a second one: next test)
    scorer = Scorer(session)
    names = sorted(trained["manifests"])
    for n in names:
        scorer.submit(n)
    first_id = ray.get(scorer.actor.data_id.remote())
    results = scorer.wait()
    assert ray.get(scorer.actor.data_id.remote()) == first_id
    scorer.close()
    assert set(results) == set(names)
    for n in names:
        assert "accuracy" in results[n]["selected"] and scores_fresh(session.cfg, n)
    log = (open_store(session.cfg).root / "logs" / "scorer.log").read_text()
    assert log.count("scoring sample:") == 1  # built once for both trajectories
    again = Scorer(session)
    again.submit(names[0])
    assert again.actor is None and "up to date; skipping" in logs.text


def test_two_scorer_actors_score_trajectories_side_by_side(trained, logs):
    logs.set_level(logging.DEBUG, logger="harness")  # "queued on scorer actor" is a debug line
    session = trained["session"]
    names = sorted(trained["manifests"])
    before, session.cfg.cluster.scorers = session.cfg.cluster.scorers, 2
    scorer = Scorer(session)
    try:
        for n in names:
            scorer.submit(n, force=True)
        assert len(scorer.actors) == 2  # the first was busy: a second one took the next trajectory
        results = scorer.wait()
    finally:
        scorer.close()
        session.cfg.cluster.scorers = before
    assert set(results) == set(names) and all("selected" in results[n] for n in names)
    assert "queued on scorer actor 1/1" in logs.text and "queued on scorer actor 2/2" in logs.text


def test_an_idle_scorer_releases_its_actor_and_the_next_trajectory_starts_a_new_one(trained, logs):
    """``ckd run`` with overlap: an idle scorer actor would keep its CPU from students while later
    teachers train, so it is killed once nothing is queued, and the next trajectory gets a new one."""
    logs.set_level(logging.DEBUG, logger="harness")
    session = trained["session"]
    first, second = sorted(trained["manifests"])[:2]
    scorer = Scorer(session)
    scorer.release_idle = True
    try:
        scorer.submit(first, force=True)
        assert len(scorer.actors) == 1
        while scorer.refs:
            scorer.poll(timeout=1.0)
        assert scorer.actors == [] and first in scorer.results  # scored, then released
        assert "idle scorer actor(s) released" in logs.text
        scorer.submit(second, force=True)
        assert len(scorer.actors) == 1  # a fresh actor for the next trajectory
        results = scorer.wait()
    finally:
        scorer.close()
    assert set(results) == {first, second} and all("selected" in results[n] for n in (first, second))


@pytest.fixture(scope="module")
def swept(trained):
    """Scores + a sweep over every kind of teacher choice on the trained store."""
    session = trained["session"]
    scorer = Scorer(session)
    for n in trained["manifests"]:
        scorer.submit(n)
    scorer.wait()
    scorer.close()
    cfg = session.cfg
    cfg.sweep.teacher_choices = [
        "none",
        "every_checkpoint",
        "selected:accuracy",
        "snapshot:[0.5,1.0]",
        "full_ensemble:2",
    ]
    cfg.sweep.seeds = [0, 1]
    cfg.student.epochs = 3
    with LogLines() as lines:
        rows = run_sweep(session)
    return {"session": session, "rows": rows, "lines": lines}


def _csv_rows(store):
    store.compact_results()  # what the verb does after the sweep (harness.pipeline)
    with open(store.results_csv) as f:
        return list(csv.DictReader(f))


def test_sweep_writes_one_row_per_trial_with_tune_identity(swept):
    cfg = swept["session"].cfg
    store = open_store(cfg)
    runs = sweep_runs(cfg)
    choices = [r.teacher_choice for r in runs]
    assert "every_checkpoint" not in choices and {"epoch:5", "epoch:10", "epoch:15"} <= set(choices)
    assert len(runs) == 2 * (1 + 3 + 1 + 1 + 1)
    rows = _csv_rows(store)
    assert len(rows) == len(runs) == len({r["run_id"] for r in rows})
    for r in rows:
        for key in (
            "run_id",
            "trial_id",
            "trial_name",
            "tune_experiment",
            "teacher_choice",
            "temperature",
            "kd_weight",
            "seed",
            "student_arch",
            "teacher_checkpoints",
            "final_val_acc",
            "final_test_acc",
            "best_val_acc",
            "test_acc_at_best_val",
            "epochs",
            "wall_time_s",
        ):
            assert r.get(key) not in (None, ""), (key, r)
        if r["teacher_choice"] != "none":
            assert float(r["teacher_test_acc"]) > 0 and json.loads(r["teacher_checkpoints"])
            assert int(float(r["teacher_seed"])) == int(float(r["seed"]))  # paired teacher seeds
    snap = [json.loads(r["teacher_checkpoints"]) for r in rows if r["teacher_choice"] == "snapshot:[0.5,1.0]"]
    assert all(len(s) == 2 for s in snap)
    ens = [json.loads(r["teacher_checkpoints"]) for r in rows if r["teacher_choice"] == "full_ensemble:2"]
    assert all({c["trajectory"] for c in e} == {"cnn1d_small-mnist1d-s0", "cnn1d_small-mnist1d-s1"} for e in ens)


def test_trials_report_every_epoch_with_a_checkpoint(swept):
    store = open_store(swept["session"].cfg)
    exp = next((store.root / "tune").iterdir())
    trials = sorted(exp.glob("trial_*"))
    # sweep.pack_size=auto: the 14 students in as many packs (trials) as the cluster runs at once
    assert 1 < len(trials) < len(swept["rows"])
    members = 0
    for t in trials:
        lines = [json.loads(x) for x in (t / "result.json").read_text().splitlines() if x.strip()]
        assert [x["epoch"] for x in lines] == [1, 2, 3] and all("val_acc" in x for x in lines)
        assert ["test_acc" in x for x in lines] == [False, False, True]  # test: after the last epoch only
        members += lines[-1]["members"]
        assert (t / "student_state.pt").is_file()  # the state a retried trial resumes from
        assert (t / "distill.log").read_text().count("final test acc") == lines[-1]["members"]
    assert members == len(swept["rows"])
    rows = swept["rows"]
    assert {r["trial_id"] for r in rows} == {
        json.loads((t / "result.json").read_text().splitlines()[-1])["trial_id"] for t in trials
    }


def test_ray_results_reproduce_bit_for_bit_in_this_process(swept):
    """Every student row of the Ray sweep (packs of 7, trial processes), re-trained alone here;
    both trajectories (s0's actor was killed mid-run and resumed), re-trained from scratch; both
    scores files (scorer actors), re-scored here: the same bits (``ckd verify``'s checks)."""
    cfg = swept["session"].cfg
    rows = open_store(cfg).read_results()
    checks = check_runs(cfg, len(rows), 0) + check_trajectories(cfg, 2, 0) + check_scores(cfg, 2, 0)
    assert len(checks) == len(rows) + 4
    assert [c.line() for c in checks if c.status != "bit-identical"] == []


def test_finished_sweep_is_not_started_again(swept, logs):
    before = len(_csv_rows(open_store(swept["session"].cfg)))
    run_sweep(swept["session"])
    assert "nothing to run" in logs.text
    assert len(_csv_rows(open_store(swept["session"].cfg))) == before


def test_interrupted_sweep_resumes_with_tuner_restore(swept, logs):
    """A driver killed mid-sweep (SIGKILL): re-running restores the Tune experiment and ends with
    every trial reported exactly once."""
    session = swept["session"]
    cfg = session.cfg
    store = open_store(cfg)
    before = len(store.read_results())
    overrides = tiny_overrides(
        Path(cfg.storage),
        **{
            "teacher.epochs": 15,
            "teacher.checkpoint_every": 5,
            "scoring.estimators": "[accuracy,ce_bound,kde]",
            "sweep.teacher_choices": '["none","full"]',
            "sweep.seeds": "[0,1]",
            "student.epochs": 25,
            "sweep.temperature": "[2.0]",
            "sweep.pack_size": 1,  # one student per trial: the driver dies between rows
            "cluster.address": ray.get_runtime_context().gcs_address,
        },
    )
    out = open(Path(cfg.storage).parent / "interrupted-driver.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "sweep", str(QUICKSTART), *overrides],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: len(store.read_results()) >= before + 1 or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, Path(out.name).read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out.close()
    partial = len(store.read_results()) - before
    assert partial < 4
    cfg2 = load_config(QUICKSTART, overrides[:-1])
    with ClusterSession(cfg2) as s2:
        run_sweep(s2)
    assert "resuming the Tune experiment" in logs.text and "Tuner.restore" in logs.text
    rows = store.read_results()
    assert len(rows) == before + 4 and len({r["run_id"] for r in rows}) == len(rows)


def test_killed_trial_is_retried_from_its_checkpoint(swept, logs):
    """Kill a trial's process mid-run: FailureConfig retries it and the trainable resumes from
    tune.get_checkpoint(); the result is reported once."""
    session = swept["session"]
    cfg = session.cfg
    store = open_store(cfg)
    cfg.sweep.teacher_choices = ["full"]
    cfg.sweep.seeds = [0]
    cfg.student.epochs = 60  # killed at epoch 20: 40 epochs left to resume
    cfg.sweep.reuse_actors = False
    before = len(store.read_results())
    killed: dict = {}

    def killer() -> None:
        def target():
            for log in (store.root / "tune").glob("*/trial_*/distill.log"):
                text = log.read_text()
                if "epoch  20/60" in text and "resuming" not in text:
                    return log, int(text.split(" pid ")[1].split()[0])
            return None

        log, pid = _wait_for(target, timeout=120, every=0.02)
        os.kill(pid, signal.SIGKILL)
        killed["log"] = log

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    run_sweep(session)
    t.join(timeout=5)
    assert "log" in killed
    text = killed["log"].read_text()
    assert "resuming from its checkpoint after epoch" in text
    assert "failed; retrying from its last checkpoint" in logs.text
    rows = store.read_results()
    assert len(rows) == before + 1 and rows[-1]["teacher_choice"] == "full"
    assert len(rows[-1]["val_acc_per_epoch"]) == 60


def test_wandb_offline_runs_are_written_under_storage(swept, monkeypatch):
    pytest.importorskip("wandb")
    from harness import tracking

    monkeypatch.delenv("WANDB_MODE", raising=False)
    session = swept["session"]
    cfg = session.cfg
    cfg.tracking.mode = TrackingMode.offline
    cfg.sweep.teacher_choices = ["full"]
    cfg.sweep.seeds = [1]
    cfg.student.epochs = 2
    run_sweep(session)
    runs = tracking.offline_run_dirs(cfg)
    assert runs, "no offline-run-* folder under <storage>/<name>/wandb"
    assert all(Path(cfg.storage) in r.parents for r in runs)
    cfg.tracking.mode = TrackingMode.disabled


def test_asha_stops_weak_trials_and_finished_ones_get_their_row(swept, logs):
    session = swept["session"]
    cfg = session.cfg
    store = open_store(cfg)
    cfg.sweep.teacher_choices = ["fraction:0.5"]
    cfg.sweep.temperature = [1.0, 8.0]
    cfg.sweep.kd_weight = [0.1, 0.9]
    cfg.sweep.seeds = [0]
    cfg.sweep.scheduler, cfg.sweep.grace_period, cfg.sweep.reduction_factor = Scheduler.asha, 1, 2.0
    cfg.student.epochs = 4
    before = len(store.read_results())
    rows = run_sweep(session)
    assert "stopped early by the asha scheduler" in logs.text
    assert 1 <= len(rows) < 4 and all(r["epochs"] == 4 and len(r["val_acc_per_epoch"]) == 4 for r in rows)
    assert len(store.read_results()) == before + len(rows)
    cfg.sweep.scheduler = Scheduler.none


def test_ckd_run_end_to_end_then_rerun_skips_everything(cluster, tmp_path, capsys):
    from harness.cli import main

    args = [
        "run",
        str(QUICKSTART),
        *tiny_overrides(
            tmp_path / "runs",
            **{
                "sweep.teacher_choices": '["none","full","selected:paper"]',
                "sweep.seeds": "[0,1]",
                "teacher.checkpoint_every": 1,  # 4 checkpoints: with 2, min-max scores often tie (a degenerate pick)
                "scoring.estimators": "[ridge,accuracy]",
            },
        ),
    ]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "teacher choice" in out.out and "selected:paper" in out.out and "[run] stage times" in out.err
    began = time.time()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert time.time() - began < 15
    assert "nothing to run" in err and "up to date; skipping" in err and "trajectories to train" not in err


def test_students_start_while_later_teachers_still_train(cluster, tmp_path, logs):
    """sweep.overlap: with 3 trajectories on 2 CPUs the third trains alone at the end; the runs of
    a finished trajectory are handed to Tune during that time, not after the stage barrier."""
    from harness.cluster.pipeline import run_stages

    logs.set_level(logging.DEBUG, logger="harness")  # the "[sweep] ready: ..." release lines are debug

    cfg = load_config(
        QUICKSTART,
        tiny_overrides(
            tmp_path / "runs",
            **{
                # the third trajectory must outlast the scorer's start: it takes the free CPU first (new
                # students are held while a trajectory or the scorer waits for a slot)
                "teacher.seeds": "[0,1,2]",
                "teacher.epochs": 40,
                "teacher.checkpoint_every": 20,
                "student.epochs": 2,
                "cluster.scorers": 1,  # a second scorer would wait for the third trajectory's CPU (and hold students)
                "sweep.teacher_choices": '["full","selected:accuracy"]',
                "sweep.seeds": "[0,1,2]",
                "scoring.estimators": "[accuracy]",
            },
        ),
    )
    times = run_stages(cfg)
    store = open_store(cfg)
    rows = store.read_results()
    assert len(rows) == 6 and "sweep (overlapped)" in times
    last_teacher = store.trajectory("cnn1d_small-mnist1d-s2").manifest_path.stat().st_mtime
    released = [r.created for r in logs.records if r.getMessage().startswith("[sweep] ready: cnn1d_small-mnist1d-s0;")]
    assert released and released[0] < last_teacher  # handed to Tune before the last teacher finished


def test_a_large_grid_runs_as_several_tune_experiments(swept):
    """sweep.trials_per_experiment slices the grid (bounding the Tune driver's memory); every run
    still gets exactly one row, and a re-run finds nothing to do."""
    session = swept["session"]
    cfg = session.cfg
    cfg.sweep.teacher_choices, cfg.sweep.seeds, cfg.student.epochs = ["full"], [0, 1, 2], 1
    cfg.sweep.temperature, cfg.sweep.kd_weight = [4.0], [0.5]  # earlier tests of the module widened them
    cfg.sweep.trials_per_experiment = 2
    rows = run_sweep(session)
    store = open_store(cfg)
    parts = sorted(p.name[-7:] for p in (store.root / "tune").iterdir() if "-part" in p.name)
    assert parts == ["part000", "part001"] and len(rows) == 3 and len({r["run_id"] for r in rows}) == 3
    assert len(run_sweep(session)) == 3  # nothing to train the second time
    cfg.sweep.trials_per_experiment = 500


def test_an_adaptive_sweep_runs_its_rounds_on_ray(cluster, tmp_path, logs):
    """sweep.until=decided on Ray with stage overlap: each round is one cluster session whose new
    trajectories are new actors (round 1 trains only the trajectories round 0 did not)."""
    from harness import adaptive
    from harness.pipeline import run_pipeline

    cfg = load_config(
        QUICKSTART,
        tiny_overrides(
            tmp_path / "runs",
            **{
                "sweep.until": "decided",
                "sweep.budget.teacher_epochs": 16,
                "sweep.budget.student_epochs": 1000,
                "report.compare": "[fraction:0.5]",
                "report.equivalence_margin": 0.01,
                "sweep.teacher_choices": "[full,fraction:0.5]",
                "sweep.seeds": "[0,1]",
                "scoring.estimators": "[accuracy]",
            },
        ),
    )
    run_pipeline(cfg, plots=False)
    journal = adaptive.load_journal(cfg)
    rounds = [(r["n"], r["m"], r["status"]) for r in journal["rounds"]]
    assert len(rounds) >= 2 and rounds[0] == (2, 1, "done") and all(s == "done" for *_, s in rounds)
    trained = [int(m[1]) for m in re.finditer(r"\[teachers\] (\d+) pack\(s\) to train in Ray actors", logs.text)]
    assert trained[0] == 2 and trained[1] == rounds[1][0] - 2  # round 1: only the new trajectories
    rows = open_store(cfg).read_results()
    n, m = rounds[-1][0], rounds[-1][1]
    assert len({(r["seed"], r["teacher_seed"], r["teacher_choice"]) for r in rows}) == n * m * 2
    assert journal["stopped"]["reason"] in ("budget", "decided", "information")
