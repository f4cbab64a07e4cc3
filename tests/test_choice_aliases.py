"""Choices that name the same checkpoint before training (``full``, ``epoch:<last>``, ``fraction:F``
and its nearest ``epoch:E``) are one run of the sweep, trained under one name; the selectors'
ground truth still has every epoch (the kept run is relabelled ``epoch:E`` by the report)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from harness.config_loading import load_config
from harness.report.selectors import ground_truth
from harness.store import CheckpointStore, trajectory_name
from harness.sweep import choice_aliases, expand_teacher_choices, static_aliases, sweep_runs
from harness.teacher_choices import ResolveContext, choice_of, resolve_teacher_choice
from harness.teachers import checkpoint_epochs
from tests.helpers import QUICKSTART, tiny_overrides
from tests.synthetic_results import planted_rows

EPOCHS = checkpoint_epochs(80, 10)  # 10, 20, ..., 80
EVERY = [f"epoch:{e}" for e in EPOCHS]


def _cfg(tmp_path: Path, choices: str, **extra: object):
    """configs/quickstart.yaml with 80 teacher epochs, a checkpoint every 10, and ``choices``."""
    over = {"teacher.epochs": 80, "teacher.checkpoint_every": 10, "sweep.teacher_choices": choices, **extra}
    return load_config(QUICKSTART, tiny_overrides(tmp_path / "runs", **over))


def test_full_and_its_last_epoch_are_one_choice_kept_as_full() -> None:
    kept, aliases = choice_aliases(["none", *EVERY, "full"], EPOCHS)
    assert kept == ["none", *EVERY[:-1], "full"] and aliases == {"full": ["epoch:80"]}
    kept, aliases = choice_aliases(["full", *EVERY], EPOCHS)  # full listed first: kept where it is
    assert kept == ["full", *EVERY[:-1]] and aliases == {"full": ["epoch:80"]}


def test_a_fraction_and_its_nearest_epoch_keep_the_first_listed_unless_one_is_the_reference() -> None:
    kept, aliases = choice_aliases(["full", "fraction:0.5", *EVERY], EPOCHS)
    assert "fraction:0.5" in kept and "epoch:40" not in kept
    assert aliases == {"full": ["epoch:80"], "fraction:0.5": ["epoch:40"]}
    kept, aliases = choice_aliases([*EVERY, "fraction:0.5"], EPOCHS)
    assert "epoch:40" in kept and "fraction:0.5" not in kept and aliases == {"epoch:40": ["fraction:0.5"]}
    kept, aliases = choice_aliases(["full", "fraction:0.5", *EVERY], EPOCHS, reference="epoch:40")
    assert "epoch:40" in kept and "fraction:0.5" not in kept and aliases["epoch:40"] == ["fraction:0.5"]
    kept, aliases = choice_aliases(["epoch:80", "fraction:1.0"], EPOCHS)  # no full, no reference: the first
    assert kept == ["epoch:80"] and aliases == {"epoch:80": ["fraction:1.0"]}


def test_ensembles_scored_picks_and_unsaved_epochs_are_never_aliases() -> None:
    choices = ["none", "full", "snapshot:[0.5,1.0]", "full_ensemble:2", "selected:paper", "selected_ensemble:2"]
    assert choice_aliases([*choices, "epoch:75"], EPOCHS) == ([*choices, "epoch:75"], {})
    assert choice_aliases(["full", "full"], EPOCHS) == (["full"], {})  # a repeat is no alias group
    assert choice_aliases(["full", "epoch:80"], []) == (["full", "epoch:80"], {})  # nothing saved: nothing known


def test_static_epochs_agree_with_the_resolver(tmp_path: Path) -> None:
    """Aliases are judged by the resolver's own rule (nearest saved epoch for a fraction, earlier on ties)."""
    saved = [3, 6, 9, 10]  # every 3 of 10 epochs: 0.45 x 10 lies half-way between 3 and 6
    store = CheckpointStore(tmp_path, "exp")
    traj = store.trajectory("a-d-s0")
    traj.dir.mkdir(parents=True)
    traj.write_manifest(
        {"finished": True, "checkpoints": [{"epoch": e, "file": f"ckpt-e{e:04d}.pt", "sha256": "0"} for e in saved]}
    )
    ctx = ResolveContext.for_run(store, "a", "d", 0, [0], 10)
    for text in ("full", "epoch:6", "fraction:0.45", "fraction:0.5", "fraction:0.1", "fraction:1.0"):
        (ref,) = resolve_teacher_choice(text, ctx)
        assert choice_of(text).static_epoch(saved, 10) == ref.epoch, text


def test_the_sweep_trains_full_once_not_again_as_its_last_epoch(tmp_path: Path, caplog) -> None:
    cfg = _cfg(tmp_path, '["none","full","every_checkpoint"]', **{"sweep.seeds": "[0,1]"})
    with caplog.at_level(logging.INFO, logger="harness"):
        runs = sweep_runs(cfg)
    choices = {r.teacher_choice for r in runs}
    assert "epoch:80" not in choices and "full" in choices and set(EVERY[:-1]) <= choices
    assert len(runs) == 2 * (1 + 1 + 7)  # none, full, epoch:10..70; x 2 seeds (one T, one weight)
    assert static_aliases(cfg, "cnn1d_small") == {"full": ["epoch:80"]}
    assert "[sweep] epoch:80 is the same checkpoint as full: trained once, as full" in caplog.text
    picked = _cfg(tmp_path, '["full","fraction:0.5","every_checkpoint"]', **{"report.reference": "epoch:40"})
    assert static_aliases(picked, "cnn1d_small") == {"full": ["epoch:80"], "epoch:40": ["fraction:0.5"]}
    assert "fraction:0.5" not in expand_teacher_choices(picked, "cnn1d_small")


def test_static_aliases_read_a_finished_trajectory(tmp_path: Path) -> None:
    """After training, the saved epochs come from the manifest (what the resolver reads)."""
    cfg = _cfg(tmp_path, '["full","fraction:0.5","epoch:40"]', **{"teacher.seeds": "[0]"})
    traj = CheckpointStore(cfg.storage, cfg.name).trajectory(trajectory_name("cnn1d_small", cfg.data.name, 0))
    traj.dir.mkdir(parents=True)
    saved = [20, 45, 80]  # not the schedule: the manifest is what counts (fraction:0.5 -> 45, not 40)
    traj.write_manifest(
        {"finished": True, "checkpoints": [{"epoch": e, "file": f"ckpt-e{e:04d}.pt", "sha256": "0"} for e in saved]}
    )
    assert static_aliases(cfg, "cnn1d_small") == {}
    assert expand_teacher_choices(cfg, "cnn1d_small") == ["full", "fraction:0.5", "epoch:40"]


@pytest.mark.parametrize("drop_last", [False, True])
def test_the_ground_truth_keeps_the_last_epoch_from_the_full_runs(drop_last: bool) -> None:
    """A grid without ``epoch:<last>`` rows: the ``full`` rows stand for the last checkpoint."""
    effects = {10: -0.01, 20: 0.0, 30: 0.01}
    rows = planted_rows(effects, {}, n_traj=2, n_seeds=4)
    if drop_last:
        rows = [r for r in rows if r["teacher_choice"] != "epoch:30"]
    gt = ground_truth(rows)
    assert len(gt) == 2  # one per trajectory
    for entries in gt.values():
        assert sorted(entries) == [10, 20, 30]
        assert entries[30]["n"] == 2  # both student seeds of the trajectory
    if drop_last:
        full = [r["final_test_acc"] for r in rows if r["teacher_choice"] == "full" and r["teacher_seed"] == 0]
        (traj0,) = [k for k in gt if k[3].endswith("-s0")]
        assert gt[traj0][30]["test_mean"] == pytest.approx(sum(full) / len(full))
