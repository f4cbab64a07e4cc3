"""Synthetic result rows and scores files with planted effects (for the report's tests)."""

from __future__ import annotations

import numpy as np

from harness.config_loading import load_config
from harness.runs import RunResolver
from harness.scoring.scores_file import SCORES_SCHEMA_VERSION
from harness.scoring.scores_file import write_scores as sealed_scores
from harness.store import CheckpointStore
from tests.helpers import QUICKSTART

ARCH, DATA, STUDENT = "cnn1d_small", "mnist1d", "mlp_small"


def traj(seed: int) -> str:
    return f"{ARCH}-{DATA}-s{seed}"


def result_row(
    choice: str,
    seed: int,
    teacher_seed: int | None,
    ckpts: list[tuple[str, int]],
    test: float,
    val: float | None = None,
    teacher_acc: float | None = 0.98,
    epochs: int = 30,
    wall: float = 2.0,
) -> dict:
    """One row shaped like harness.distill's ``_result_row``."""
    none = choice == "none"
    val = test if val is None else val
    return {
        "run_id": f"{choice}|{seed}|{teacher_seed}",
        "experiment": "exp",
        "dataset": DATA,
        "teacher_choice": choice,
        "teacher_arch": None if none else ARCH,
        "teacher_seed": None if none else teacher_seed,
        "teacher_checkpoints": [] if none else [{"trajectory": t, "epoch": e} for t, e in ckpts],
        "student_arch": STUDENT,
        "seed": seed,
        "temperature": 4.0,
        "kd_weight": 0.0 if none else 0.5,
        "ensemble_reduce": "probs",
        "epochs": epochs,
        "final_val_acc": val,
        "final_test_acc": test,
        "best_val_acc": val,
        "best_val_epoch": epochs,
        "test_acc_at_best_val": test,
        **({} if none else {"teacher_val_acc": teacher_acc, "teacher_test_acc": teacher_acc}),
        "val_acc_per_epoch": [val],
        "test_acc_per_epoch": [test],
        "wall_time_s": wall,
        "device": "cpu",
    }


def planted_rows(
    epoch_effects: dict[int, float],
    other_effects: dict[str, float],
    n_traj: int = 5,
    n_seeds: int = 10,
    seed: int = 0,
    picks: dict[str, int] | None = None,
) -> list[dict]:
    """Rows of a paired sweep (student seed i learns from trajectory i mod n_traj): every
    checkpoint (``epoch:E`` with ``epoch_effects[E]``), ``full`` (= the last epoch), ``none`` and
    the choices in ``other_effects`` (planted effect each); ``selected:<sel>`` rows use ``picks``.
    Accuracy = 0.70 + effect + a per-seed effect shared by every choice + small run noise."""
    rng = np.random.default_rng(seed)
    seed_fx = rng.normal(0, 0.005, n_seeds)
    last = max(epoch_effects)
    rows = []

    def acc(effect: float, s: int) -> float:
        return float(0.70 + effect + seed_fx[s] + rng.normal(0, 0.001))

    for s in range(n_seeds):
        ts = s % n_traj
        for e, fx in epoch_effects.items():
            rows.append(result_row(f"epoch:{e}", s, ts, [(traj(ts), e)], acc(fx, s), teacher_acc=0.9 + e / 1000))
        rows.append(result_row("full", s, ts, [(traj(ts), last)], acc(epoch_effects[last], s)))
        rows.append(result_row("none", s, None, [], acc(-0.03, s)))
        for choice, fx in other_effects.items():
            kind, _, arg = choice.partition(":")
            if kind == "snapshot":
                ckpts = [(traj(ts), last // 2), (traj(ts), last)]
            elif kind == "full_ensemble":
                ckpts = [(traj(ts), last), (traj((ts + 1) % n_traj), last)]
            else:  # selected:<sel>
                ckpts = [(traj(ts), (picks or {}).get(arg, last))]
            rows.append(
                result_row(choice, s, ts, ckpts, acc(fx, s), teacher_acc=0.985 if kind == "full_ensemble" else 0.97)
            )
    return rows


def write_scores(
    store: CheckpointStore,
    name: str,
    epochs: list[int],
    selections: dict[str, dict],
    scores: dict[str, dict[int, float]],
    timings: dict | None = None,
    selectors: dict | None = None,
) -> None:
    """A scores file with the keys the report reads (``selected``, ``checkpoints[].normalized``,
    ``selectors``, ``timings``), of the current schema and sealed with its digest."""
    sealed_scores(
        store,
        name,
        {
            "schema_version": SCORES_SCHEMA_VERSION,
            "trajectory": name,
            "arch": ARCH,
            "dataset": DATA,
            "selected": selections,
            "selectors": selectors or {},
            "checkpoints": [
                {"epoch": e, "normalized": {sel: {"score": sc[e]} for sel, sc in scores.items()}} for e in epochs
            ],
            "timings": timings or {"total_s": 1.0},
        },
    )


def fill_store(store: CheckpointStore, rows: list[dict], overrides: tuple[str, ...] = ()) -> None:
    """Record ``rows`` with the run ids configs/quickstart.yaml (+ ``overrides``) gives their run
    fields: the rows its report counts (harness.report.board.rows_of_config)."""
    cfg = load_config(QUICKSTART, [f"storage={store.storage}", *overrides])
    resolver = RunResolver(cfg)
    for r in rows:
        store.append_result({**r, "run_id": resolver.run_id_of(r)})
