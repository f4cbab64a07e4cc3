"""Evaluation at most where it is reported (issue 22): test only after the last epoch and, from a
kept copy of each member's best-validation weights, at its best-val epoch. The rows equal those of
the old policy (test after every epoch) bit for bit, also after a resume mid-run."""

from __future__ import annotations

import copy

import pytest

from harness import distill
from harness.config_loading import load_config
from harness.distill import distill_pack
from harness.row_schema import row_problem
from harness.runs import Run
from harness.tracking import student_curve
from tests.helpers import QUICKSTART, tiny_overrides, valid_row

EPOCHS = 5
RUNS = [  # no teacher (nothing to train first); different seeds and KD settings
    {"teacher_choice": "none", "seed": s, "temperature": 4.0, "kd_weight": 0.0, "teacher_seed": 0} for s in range(4)
]
SAME = ("final_test_acc", "test_acc_at_best_val", "best_val_acc", "best_val_epoch", "final_val_acc")
SAME += ("val_acc_per_epoch", "weights_sha256", "run_id")


def _cfg(tmp_path, name: str, arch: str):
    over = {
        "data.num_samples": 2000,
        "student.epochs": EPOCHS,
        "student.optim.lr": 0.4,
        "student.optim.schedule": "constant",
    }
    cfg = load_config(QUICKSTART, tiny_overrides(tmp_path / name, **over))
    cfg.student.archs = [arch]
    return cfg


def _train(cfg, arch: str, resume: dict | None = None, every: bool = False) -> tuple[list[dict], list[dict]]:
    states: list[dict] = []
    runs = [Run.from_dict(cfg, {**r, "student_arch": arch}) for r in RUNS]
    old, distill._test_every_epoch = distill._test_every_epoch, every
    try:
        rows = distill_pack(cfg, runs, on_epoch=lambda m, s: states.append(copy.deepcopy(s)), resume=resume)
    finally:
        distill._test_every_epoch = old
    return rows, states


@pytest.mark.parametrize("arch", ["mlp_small", "cnn1d_tiny"])  # plain MLP; BatchNorm CNN
def test_test_at_the_last_and_best_epochs_only_gives_the_old_rows(tmp_path, arch):
    rows, states = _train(_cfg(tmp_path, "new", arch), arch)
    old, _ = _train(_cfg(tmp_path, "old", arch), arch, every=True)
    assert any(r["best_val_epoch"] < EPOCHS for r in rows), "no member peaked before the end: nothing checked"
    for new, ref in zip(rows, old):
        assert row_problem(new) is None
        assert {k: new[k] for k in SAME} == {k: ref[k] for k in SAME}
        curve = new["test_acc_per_epoch"]  # null where test was not evaluated
        assert len(curve) == EPOCHS and None not in ref["test_acc_per_epoch"]
        assert {e + 1 for e, t in enumerate(curve) if t is not None} == {EPOCHS, new["best_val_epoch"]}
        assert all(t is None or t == ref["test_acc_per_epoch"][e] for e, t in enumerate(curve))
        assert [s.get("test_acc") for s in student_curve(new)] == curve
    assert ["test_acc" in m for m in states[0]["histories"][0]] == [False]  # epoch 1: val only
    # resumed after epoch 2 (the best-val copies travel in the state): the same rows
    resumed, _ = _train(_cfg(tmp_path, "resumed", arch), arch, resume=states[1])
    assert "best" in states[1]
    assert [{k: r[k] for k in (*SAME, "test_acc_per_epoch")} for r in resumed] == [
        {k: r[k] for k in (*SAME, "test_acc_per_epoch")} for r in rows
    ]


def test_old_rows_with_a_full_test_curve_stay_valid_and_nulls_elsewhere_are_refused():
    full = valid_row("r1")
    assert row_problem(full) is None and None not in full["test_acc_per_epoch"]
    assert row_problem({**full, "test_acc_per_epoch": [None, 0.5]}) is None
    assert row_problem({**full, "val_acc_per_epoch": [None, 0.5]})[1].startswith("val_acc_per_epoch")
    assert row_problem({**full, "test_acc_per_epoch": [None, 1.5]})[1].startswith("test_acc_per_epoch")
