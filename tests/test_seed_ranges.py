"""Seed ranges (issue 22, point 2): ``sweep.seeds`` / ``teacher.seeds`` as ``range(a, b[, step])``
on the command line and in YAML, kept compact (never an OmegaConf list), read through one accessor
(``harness.config.seed_list``) that gives the same runs and run ids as the equal list; mistakes
and OmegaConf's YAML node limit are one line naming the key; a 10^4-run grid plans from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import ListConfig, OmegaConf

from harness.cli import main, show_config
from harness.config import ConfigError, seed_list
from harness.config_loading import load_config
from harness.runs import Run
from harness.sweep import grid_name, plan, sweep_runs
from tests.helpers import QUICKSTART, assert_refused_in_one_line

CHOICES = 'sweep.teacher_choices=["none","full","fraction:0.5","every_checkpoint","full_ensemble:2"]'


def _cfg(storage: Path, *overrides: str):
    """The quickstart under its own name (the sweep's alias notes are said once per experiment and process)."""
    return load_config(
        QUICKSTART, ["name=seed_ranges", f"storage={storage}", "tracking.mode=disabled", CHOICES, *overrides]
    )


def _finished_teachers(storage: Path, seeds: range, epochs: int = 80, every: int = 10) -> None:
    """Manifest-only finished trajectories: enough to resolve runs to run ids (nothing is read)."""
    for s in seeds:
        d = storage / "seed_ranges" / "trajectories" / f"cnn1d_small-mnist1d-s{s}"
        d.mkdir(parents=True, exist_ok=True)
        ckpts = [
            {"epoch": e, "file": f"ckpt-e{e:04d}.pt", "sha256": f"{s:02d}" * 32}
            for e in range(every, epochs + 1, every)
        ]
        (d / "manifest.json").write_text(json.dumps({"finished": True, "epochs": epochs, "checkpoints": ckpts}))


def test_ranges_load_from_overrides_and_yaml_compact_and_print_back(tmp_path):
    cfg = _cfg(tmp_path, "sweep.seeds=range(0,100000)", "teacher.seeds=range( 0 , 3 )")
    assert seed_list(cfg.sweep) == range(100_000) and seed_list(cfg.teacher) == range(3)
    assert not isinstance(cfg.sweep._get_node("seeds"), ListConfig)  # never expanded
    shown = show_config(cfg)
    assert "seeds: range(0, 100000)" in shown and "seeds: range(0, 3)" in shown  # canonical text
    path = tmp_path / "c.yaml"
    path.write_text(f"name: y\nstorage: {tmp_path}\nteacher:\n  seeds: range(1, 4)\nsweep:\n  seeds: range(0, 10, 2)\n")
    cfg = load_config(path)
    assert seed_list(cfg.sweep) == range(0, 10, 2) and list(seed_list(cfg.teacher)) == [1, 2, 3]
    assert load_config(QUICKSTART, [f"storage={tmp_path}"]).sweep.seeds == [0, 1, 2]  # lists stay lists
    assert seed_list([4, 5]) == (4, 5) and seed_list("range(2, 4)") == range(2, 4)


def _text(seeds: range | list) -> tuple[str, str]:
    """``seeds`` as an override value: the range form (a list stays a list) and the list form."""
    listed = "[" + ",".join(map(str, seeds)) + "]"
    return (f"range({seeds.start},{seeds.stop},{seeds.step})" if isinstance(seeds, range) else listed), listed


@pytest.mark.parametrize(
    ("students", "teachers"),
    [(range(0, 7), [0, 1, 2]), (range(3, 15, 4), range(0, 3)), (range(0, 5), range(2, 4))],
)
def test_a_range_gives_the_runs_and_run_ids_of_the_equal_list(tmp_path, students, teachers):
    (s_range, s_list), (t_range, t_list) = _text(students), _text(teachers)
    _finished_teachers(tmp_path, teachers)
    ranged = _cfg(tmp_path, f"sweep.seeds={s_range}", f"teacher.seeds={t_range}")
    listed = _cfg(tmp_path, f"sweep.seeds={s_list}", f"teacher.seeds={t_list}")
    assert isinstance(seed_list(ranged.sweep), range) and isinstance(seed_list(listed.sweep), tuple)
    runs = sweep_runs(ranged)
    assert runs == sweep_runs(listed) and {r.seed for r in runs} == set(students)
    planned_r, planned_l = plan(ranged, runs), plan(listed, runs)
    ids = [p.run_id for p in planned_r]
    assert ids == [p.run_id for p in planned_l] and all(ids) and len(set(ids)) == len(ids)
    assert grid_name(ranged, runs, ids) == grid_name(listed, runs, ids)  # existing Tune experiments stay valid


def test_teacher_seed_policies_and_searcher_entries_read_ranges(tmp_path):
    paired = _cfg(tmp_path, "sweep.seeds=range(10,20)", "teacher.seeds=range(5,8)")
    assert [Run.in_grid(paired, "cnn1d_small", "mlp_small", "full", 4.0, 0.5, i).teacher_seed for i in range(4)] == [
        5,
        6,
        7,
        5,
    ]
    entry = {"teacher_choice": "full", "seed": 14}  # a searcher's entry: teacher seed from the seed's place
    assert Run.from_dict(paired, entry).teacher_seed == 6
    first = _cfg(tmp_path, "sweep.seeds=range(0,4)", "teacher.seeds=range(5,8)", "sweep.teacher_seeds=first")
    assert {r.teacher_seed for r in sweep_runs(first)} == {5}
    pinned = _cfg(tmp_path, "teacher.seeds=range(5,8)", "sweep.teacher_seeds=first", "distill.teacher_seed=7")
    assert {r.teacher_seed for r in sweep_runs(pinned)} == {7}
    with pytest.raises(ConfigError, match=r"'distill.teacher_seed': 9 is not in teacher.seeds range\(5, 8\)$"):
        _cfg(tmp_path, "teacher.seeds=range(5,8)", "distill.teacher_seed=9")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sweep.seeds=range(5,5)", "'sweep.seeds': range(5, 5) is empty; the stop must be above the start"),
        ("sweep.seeds=range(10,0,-2)", "'sweep.seeds': range(10, 0, -2): the step must be positive"),
        ("teacher.seeds=range(0,9,0)", "'teacher.seeds': range(0, 9, 0): the step must be positive"),
        ("sweep.seeds=range(-1,4)", "'sweep.seeds': range(-1, 4) is out of range; every seed must be in [0, "),
        ("sweep.seeds=range(0,1.5)", "'sweep.seeds': 'range(0,1.5)' is neither a list of seeds nor range("),
        ("sweep.seeds=rnge(0,9)", "e.g. sweep.seeds=[0,1,2] or sweep.seeds=range(0,100)"),
        ("sweep.seeds=[1,2,1]", "'sweep.seeds': has duplicates (1); list each seed once"),
        ("teacher.seeds=[0,x]", "'teacher.seeds': expected a list of integers; element 1 is 'x'"),
        ("sweep.seeds=[0.5]", "'sweep.seeds': expected a list of integers; element 0 is 0.5"),
        ("sweep.seeds=[true]", "'sweep.seeds': expected a list of integers; element 0 is True"),
        ("sweep.seeds=[]", "'sweep.seeds': needs at least one seed"),
        ("sweep.seeds=null", "'sweep.seeds': expected a list, got nothing"),
        ("sweep.seeds=3", "expected a list, got 3; write sweep.seeds=[3]"),
        ("sweep.seeds={a:1}", "'sweep.seeds': expected a list, got the mapping {a:1}"),
        ("sweep.seeds=[4294967296]", "'sweep.seeds[0]': 4294967296 is out of range; must be in [0, 4294967295]"),
        ("sweep.seeds=[" + ",".join(map(str, range(1001))) + "]", "1001 values; at most 1000 in a list (more seeds"),
    ],
)
def test_seed_mistakes_are_one_line_naming_the_key_and_the_fix(tmp_path, capsys, override, expected):
    storage = tmp_path / "runs"
    assert_refused_in_one_line(
        capsys, ["sweep", str(QUICKSTART), f"storage={storage}", override, "--dry-run"], storage, expected
    )


def test_a_list_past_omegaconfs_yaml_node_limit_is_one_line_naming_the_key(tmp_path):
    """20,000 seeds: more than OmegaConf's YAML loader reads (10^4 nodes), in an override and a file."""
    seeds = "[" + ",".join(map(str, range(0, 40_000, 2))) + "]"
    with pytest.raises(ConfigError) as e:
        load_config(QUICKSTART, [f"sweep.seeds={seeds}"])
    assert str(e.value) == (
        "config key 'sweep.seeds': 20000 values are more than OmegaConf reads from YAML (its node limit); "
        "write 'sweep.seeds=range(0, 40000, 2)'"
    )
    path = tmp_path / "big.yaml"
    path.write_text(f"name: big\nteacher:\n  seeds: {seeds[:-1]},1]\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("config key 'teacher.seeds': 20001 values are more than OmegaConf")
    assert msg.endswith("; write seeds: range(start, stop[, step]) (under teacher:)"), msg
    path.write_text("name: big\nsweep:\n  temperature: [" + ",".join(["4.0"] * 20_000) + "]\n")
    with pytest.raises(ConfigError, match=r"^config key 'sweep.temperature': 20000 values .* at most 1000 values$"):
        load_config(path)


def test_a_ten_thousand_run_grid_plans_from_the_cli_without_teachers(tmp_path, capsys):
    """``ckd sweep --dry-run`` of 10^4 runs from a range (10^5 in benchmarks/bench_scale.py):
    the range is never expanded into the config, and nothing is written."""
    storage = tmp_path / "runs"
    args = ["sweep", str(QUICKSTART), f"storage={storage}", "sweep.seeds=range(0,1667)", "--dry-run", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "10002 runs in the grid (grid): 0 done, 10002 to train (8335 wait for their teachers)" in out
    assert not storage.exists()
    cfg = load_config(QUICKSTART, [f"storage={storage}", "sweep.seeds=range(0,1667)"])
    assert OmegaConf.select(cfg, "sweep.seeds") == "range(0, 1667)"
