"""The sweep grid and the in-process (no Ray) stages: expansion, pairing, dedupe, local sweep."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.config import ConfigError
from harness.config_loading import load_config
from harness.runs import Run, teacher_seed_for
from harness.sweep import expand_teacher_choices, grid_name, plan, sweep_runs
from tests.helpers import QUICKSTART, tiny_overrides


def _cfg(tmp_path, **extra):
    return load_config(QUICKSTART, tiny_overrides(tmp_path / "runs", **extra))


def test_every_checkpoint_expands_to_the_checkpoint_schedule_before_training(tmp_path):
    cfg = _cfg(
        tmp_path,
        **{
            "teacher.epochs": 6,
            "teacher.checkpoint_every": 2,
            "sweep.teacher_choices": '["none","every_checkpoint","full","epoch:4"]',
        },
    )
    # epoch:6 is the last checkpoint: the same run as full (tests/test_choice_aliases.py)
    assert expand_teacher_choices(cfg, "cnn1d_small") == ["none", "epoch:2", "epoch:4", "full"]


def test_grid_spans_choices_hyperparameters_archs_and_paired_seeds(tmp_path):
    cfg = _cfg(
        tmp_path,
        **{
            "sweep.teacher_choices": '["none","full"]',
            "sweep.temperature": "[2.0,4.0]",
            "sweep.kd_weight": "[0.5,0.9]",
            "sweep.seeds": "[0,1,2]",
            "teacher.seeds": "[0,1]",
            "sweep.student_archs": "[mlp_small,mlp_tiny]",
        },
    )
    runs = sweep_runs(cfg)
    # none: not repeated over T x kd_weight; full: 2 x 2 grid; x 2 students x 3 seeds
    assert len(runs) == 2 * 3 * (1 + 4)
    assert len(set(runs)) == len(runs)
    full = [r for r in runs if r.teacher_choice == "full"]
    assert {(r.seed, r.teacher_seed) for r in full} == {(0, 0), (1, 1), (2, 0)}  # paired, wrapping
    assert {r.student_arch for r in runs} == {"mlp_small", "mlp_tiny"}
    none = [r for r in runs if r.teacher_choice == "none"]
    assert all(r.kd_weight == 0.0 for r in none)
    first = _cfg(tmp_path, **{"sweep.teacher_seeds": "first", "teacher.seeds": "[3,4]"})
    assert {r.teacher_seed for r in sweep_runs(first)} == {3}


def test_runs_round_trip_through_trial_configs_and_fill_open_keys(tmp_path):
    cfg = _cfg(tmp_path, **{"sweep.seeds": "[0,1,2]", "teacher.seeds": "[0,1]"})
    entry = {
        "teacher_arch": "cnn1d_small",
        "teacher_seed": 1,
        "student_arch": "mlp_tiny",
        "teacher_choice": "fraction:0.5",
        "temperature": 2.0,
        "kd_weight": 0.9,
        "seed": 5,
    }
    run = Run.from_dict(cfg, entry)
    assert run.to_dict() == entry and list(run.to_dict()) == list(Run.keys())
    assert all(Run.from_dict(cfg, r.to_dict()) == r for r in sweep_runs(cfg))
    searcher = Run.from_dict(cfg, {"teacher_choice": "full", "seed": 1})  # a searcher's entry: no teacher seed
    assert (searcher.teacher_seed, searcher.teacher_arch, searcher.student_arch) == (1, "cnn1d_small", "mlp_small")
    assert (searcher.temperature, searcher.kd_weight) == (cfg.distill.temperature, cfg.distill.kd_weight)
    alone = Run.from_distill(cfg)  # ckd distill: the distill section, open teacher seed of seed index 0
    assert (alone.teacher_choice, alone.seed, alone.teacher_seed) == ("full", 0, teacher_seed_for(cfg, 0))
    cfg.distill.teacher_seed, cfg.distill.seed = 1, 2
    assert (Run.from_distill(cfg).teacher_seed, Run.from_distill(cfg).seed) == (1, 2)


def test_grid_name_is_stable_and_changes_with_the_grid(tmp_path):
    cfg = _cfg(tmp_path)
    runs = sweep_runs(cfg)
    assert grid_name(cfg, runs) == grid_name(_cfg(tmp_path), sweep_runs(_cfg(tmp_path)))
    assert grid_name(cfg, runs) != grid_name(cfg, runs[:-1])
    assert grid_name(_cfg(tmp_path, **{"sweep.name": "mine"}), runs) == "mine"


def test_plan_skips_the_run_whose_teacher_is_missing_with_the_reason(tmp_path):
    cfg = _cfg(tmp_path, **{"sweep.teacher_choices": '["none","full"]', "sweep.seeds": "[0]"})
    planned = {p.run.teacher_choice: p for p in plan(cfg)}
    assert planned["none"].skip is None and planned["none"].run_id
    assert planned["full"].run_id == "" and not planned["full"].done
    assert "cnn1d_small-mnist1d-s0" in planned["full"].skip and "ckd teachers" in planned["full"].skip


@pytest.mark.parametrize(
    "override, key",
    [
        ("sweep.teacher_seeds=both", "sweep.teacher_seeds"),
        ("cluster.mode=k8s", "cluster.mode"),
        ("cluster.trial.gpus=1.5", "cluster.trial.gpus"),
        ("cluster.trajectory.cpus=0", "cluster.trajectory"),
        ("sweep.search=bayes", "sweep.search"),
        ("sweep.teacher_archs=[resnet8]", "sweep.teacher_archs[0]"),
        ("sweep.checkpoint_every=0", "sweep.checkpoint_every"),
    ],
)
def test_bad_sweep_and_cluster_values_name_their_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(
            QUICKSTART,
            tiny_overrides(
                tmp_path,
            )
            + [override],
        )


def test_local_pipeline_runs_without_ray_and_skips_done_work(tmp_path, capsys):
    """cluster.mode=local: the whole pipeline in-process, with ray made unimportable."""
    overrides = tiny_overrides(
        tmp_path / "runs",
        **{
            "teacher.seeds": "[0]",
            "sweep.seeds": "[0]",
            "sweep.teacher_choices": '["none","full","every_checkpoint"]',
            "scoring.estimators": "[accuracy]",
            "cluster.mode": "local",
        },
    )
    code = (
        "import sys\n"
        "class NoRay:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.') or name == 'wandb' or name.startswith('wandb.'):\n"
        "            raise ImportError('no ' + name + ' here')\n"
        "sys.meta_path.insert(0, NoRay())\n"
        "from harness.cli import main\n"
        f"rc = main(['run', {str(QUICKSTART)!r}, *{overrides!r}])\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "teacher choice" in out.stdout and "every_checkpoint" not in out.stdout  # expanded to epoch:E rows
    assert "epoch:2" in out.stdout  # epoch:4 (the last) is full's run, trained once as full
    assert "epoch:4 is the same checkpoint as full: trained once, as full" in out.stderr
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert "0 to train" in again.stderr and "finished already; skipping" in again.stderr  # the log: stderr


def test_local_flag_may_sit_among_the_overrides(tmp_path, capsys):
    from harness.cli import main

    rc = main(["teachers", str(QUICKSTART), "--local", *tiny_overrides(tmp_path), "teacher.epochs=0"])
    assert rc == 2 and "teacher.epochs" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    from harness.cli import main

    storage = tmp_path / "runs"
    args = [
        "run",
        str(QUICKSTART),
        *tiny_overrides(storage),
        "sweep.teacher_choices=[none,full,every_checkpoint]",
        "sweep.seeds=[0,1,2]",
        "--dry-run",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[teachers] 2 trajectories x 4 epochs, checkpoints at [2, 4] (2 each); 8 teacher-epochs to train" in out
    # none, full, epoch:2 (epoch:4 is full's run) x 3 seeds
    assert "[sweep] 9 runs in the grid (grid): 0 done, 9 to train (6 wait for their teachers), 0 to skip" in out
    assert "about 18 student-epochs (9 students x 2 epochs)" in out and "1 CPU, 0 GPU per trial" in out
    assert not storage.exists()
