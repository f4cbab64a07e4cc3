"""Leaderboard aggregation (hand-computed means/stds, selection by validation), renderers, plots."""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import math
import sys
import types

import pytest
from omegaconf import OmegaConf

from harness.config import ExperimentConfig
from harness.fileio import atomic_write_json
from harness.report.board import build_leaderboard
from harness.report.leaderboard import render
from harness.report.plots import make_plots
from harness.report.report import write_report
from harness.runs import RunResolver
from harness.store import CheckpointStore

TRAJ0, TRAJ1 = "cnn1d_small-mnist1d-s0", "cnn1d_small-mnist1d-s1"


def row(
    choice: str,
    seed: int,
    val: float,
    test: float,
    T: float = 4.0,
    w: float = 0.5,
    *,
    teacher_test: float | None = 0.98,
    ckpts: list[tuple[str, int]] | None = None,
    student: str = "mlp_small",
    best_val: float | None = None,
    test_at_best: float | None = None,
    best_epoch: int = 7,
) -> dict:
    """A result row shaped like harness.distill's."""
    none = choice == "none"
    ckpts = [] if none else (ckpts or [(TRAJ0, 10)])
    r = {
        "run_id": "",
        "experiment": "exp",
        "dataset": "mnist1d",
        "teacher_choice": choice,
        "teacher_arch": None if none else "cnn1d_small",
        "teacher_seed": None if none else 0,
        "teacher_checkpoints": [{"trajectory": t, "epoch": e} for t, e in ckpts],
        "student_arch": student,
        "seed": seed,
        "temperature": T,
        "kd_weight": 0.0 if none else w,
        "ensemble_reduce": "probs",
        "epochs": 10,
        "final_val_acc": val,
        "final_test_acc": test,
        "best_val_acc": val if best_val is None else best_val,
        "best_val_epoch": best_epoch,
        "test_acc_at_best_val": test if test_at_best is None else test_at_best,
        **({} if none else {"teacher_val_acc": teacher_test, "teacher_test_acc": teacher_test}),
        "val_acc_per_epoch": [val],
        "test_acc_per_epoch": [test],
        "wall_time_s": 1.0,
        "device": "cpu",
    }
    return {**r, "run_id": _resolver().run_id_of(r)}  # the id `experiment`'s report counts


@functools.cache
def _resolver() -> RunResolver:
    return RunResolver(experiment("."))


def by_choice(board: list[dict]) -> dict[str, dict]:
    return {b["teacher_choice"]: b for b in board}


@pytest.fixture
def rows() -> list[dict]:
    return [
        # no teacher: 0.60, 0.64 -> mean 0.62, sample std sqrt(2 * 0.02^2 / 1) = 0.028284
        row("none", 0, 0.61, 0.60),
        row("none", 1, 0.63, 0.64),
        # full, T=4: test 0.70, 0.72, 0.74 -> mean 0.72, std sqrt((0.0004 + 0 + 0.0004) / 2) = 0.02
        row("full", 0, 0.71, 0.70, ckpts=[(TRAJ0, 20)]),
        row("full", 1, 0.71, 0.72, ckpts=[(TRAJ0, 20)]),
        row("full", 2, 0.71, 0.74, ckpts=[(TRAJ0, 20)]),
        # full, T=1: *lower* validation (0.65) but higher test (0.90): must not be chosen
        *[row("full", s, 0.65, 0.90, T=1.0, ckpts=[(TRAJ0, 20)]) for s in range(3)],
        # full, T=20 with one seed only: best validation, but fewer seeds than the others
        row("full", 0, 0.99, 0.50, T=20.0, ckpts=[(TRAJ0, 20)]),
        # one seed only -> std n/a
        row("snapshot:[0.5,1.0]", 0, 0.75, 0.76, teacher_test=0.97, ckpts=[(TRAJ0, 10), (TRAJ0, 20)]),
        row("full_ensemble:2", 0, 0.73, 0.74, teacher_test=0.995, ckpts=[(TRAJ0, 20), (TRAJ1, 20)]),
    ]


def test_means_and_sample_stds_match_hand_computation(rows):
    board = by_choice(build_leaderboard(rows))
    full, none = board["full"], board["none"]
    assert full["n"] == 3 and full["seeds"] == [0, 1, 2]
    assert full["test_mean"] == pytest.approx(0.72) and full["test_std"] == pytest.approx(0.02)
    assert (
        none["n"] == 2
        and none["test_mean"] == pytest.approx(0.62)
        and none["test_std"] == pytest.approx(math.sqrt(0.0008))
    )
    assert full["delta_vs_none"] == pytest.approx(0.10) and none["delta_vs_none"] == pytest.approx(0.0)
    assert full["teacher_test_acc"] == pytest.approx(0.98) and none["teacher_test_acc"] is None
    assert none["temperature"] is None and none["kd_weight"] is None  # hyperparameters mean nothing without a teacher
    assert full["teacher_epochs"] == "20" and full["settings_tried"] == 3
    assert board["full_ensemble:2"]["teacher_epochs"] == "20+20"  # per run: its members' epochs
    assert board["snapshot:[0.5,1.0]"]["teacher_epochs"] == "10+20"


def test_hyperparameters_chosen_by_validation_not_test(rows):
    full = by_choice(build_leaderboard(rows))["full"]
    # T=1 has the best test accuracy (0.90), T=20 the best validation but 1 seed of 3: T=4 wins
    assert full["temperature"] == 4.0 and full["kd_weight"] == 0.5
    assert full["val_mean"] == pytest.approx(0.71) and full["test_mean"] == pytest.approx(0.72)
    # among equally-seeded settings, the higher mean validation wins even with a worse test
    flipped = [row("full", s, 0.80, 0.60, T=2.0) for s in range(2)] + [
        row("full", s, 0.70, 0.95, T=8.0) for s in range(2)
    ]
    chosen = build_leaderboard(flipped)[0]
    assert chosen["temperature"] == 2.0 and chosen["test_mean"] == pytest.approx(0.60)


def test_sorted_by_test_accuracy_with_baseline_shown(rows):
    board = build_leaderboard(rows)
    assert [b["teacher_choice"] for b in board] == ["snapshot:[0.5,1.0]", "full_ensemble:2", "full", "none"]
    assert all(b["reported"] == "final" and b["reported_epoch"] == "final (10)" for b in board)


def test_single_seed_has_na_std_and_n_1(rows):
    snap = by_choice(build_leaderboard(rows))["snapshot:[0.5,1.0]"]
    assert snap["n"] == 1 and snap["test_std"] is None
    for fmt in ("text", "markdown", "html"):
        assert "76.00 ±  n/a" in render([snap], fmt)
    line = next(csv.DictReader(io.StringIO(render([snap], "csv"))))
    assert line["test_acc_std_pct"] == "n/a" and line["n"] == "1"


def test_reported_best_val_epoch_uses_matching_val_and_test():
    rs = [
        row("full", s, 0.70, 0.70, best_val=0.80 + s / 100, test_at_best=0.75, best_epoch=5 + s) for s in range(2)
    ] + [row("full", s, 0.90, 0.90, T=8.0, best_val=0.75, test_at_best=0.99) for s in range(2)]
    final = build_leaderboard(rs, reported="final")[0]
    best = build_leaderboard(rs, reported="best_val")[0]
    assert final["temperature"] == 8.0 and final["test_mean"] == pytest.approx(0.90)
    assert best["temperature"] == 4.0 and best["test_mean"] == pytest.approx(0.75)
    assert best["reported_epoch"] == "best val (mean 5.5)"
    assert "best-validation epoch" in render([best], "text")
    with pytest.raises(ValueError, match="reported"):
        build_leaderboard(rs, reported="test")


def test_every_renderer_shows_the_numbers_and_the_policy(rows):
    board = build_leaderboard(rows)
    for fmt in ("text", "markdown", "html"):
        out = render(board, fmt)
        # Δ vs none is paired by seed: full - none on seeds 0 and 1 = (0.10 + 0.08) / 2 = +9.00 pp
        for s in ("72.00 ± 2.00", "62.00 ± 2.83", "+9.00 [", "98.00", "snapshot:[0.5,1.0]", "full_ensemble:2", "none"):
            assert s in out, (fmt, s)
        words = " ".join(out.split())  # the text renderer wraps the policy note
        assert (
            "mean validation accuracy" in words and "test accuracy is only reported" in words and "final epoch" in words
        )
    md = render(board, "markdown")
    assert md.count("\n| mnist1d |") == 4 and "|---|" in md
    html = render(board, "html")
    assert html.count("<tr") == 5 and '<table id="leaderboard">' in html
    text = render(board, "text").splitlines()
    assert len({len(line) for line in text[:2]}) == 1  # header and rule line up (fixed width)
    lines = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    full = next(r for r in lines if r["teacher_choice"] == "full")
    assert float(full["test_acc_mean_pct"]) == pytest.approx(72.0) and float(full["test_acc_std_pct"]) == pytest.approx(
        2.0
    )
    assert full["n"] == "3" and full["temperature"] == "4" and full["seeds"] == "0 1 2"
    with pytest.raises(ValueError, match="format"):
        render(board, "pdf")


def test_empty_results_give_a_clear_message(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="harness")
    assert build_leaderboard([]) == []
    for fmt in ("text", "markdown", "html"):
        assert "No student results yet" in render([], fmt)
    assert render([], "csv").startswith("dataset,teacher_arch")
    text = write_report(experiment(tmp_path), plots=False).text
    assert "No student results yet" in text and "ckd sweep" in text
    assert not (tmp_path / "exp" / "leaderboard.md").exists()
    assert [m for m in caplog.messages if m.startswith("[report]")] == [
        "[report] no student results yet; nothing written"
    ]


def experiment(storage) -> ExperimentConfig:
    return OmegaConf.merge(OmegaConf.structured(ExperimentConfig), {"storage": str(storage), "name": "exp"})


def test_write_report_reads_the_store_and_writes_the_leaderboard_files(tmp_path, rows, caplog):
    caplog.set_level(logging.INFO, logger="harness")
    store = CheckpointStore(tmp_path, "exp")
    for r in rows:
        store.append_result(r)
    broken = {**row("full", 9, 0.5, 0.5), "final_test_acc": None}  # no result: set aside, counted
    (store.results.rows_dir / f"{broken['run_id']}.json").write_text(json.dumps(broken))
    text = write_report(experiment(tmp_path), plots=False).text
    board = build_leaderboard(store.read_results())
    note = f"Not counted: 1 with a key missing or of the wrong type (set aside in {store.results.rejected_dir}).\n"
    assert "72.00 ± 2.00" in text and text == render(board, "console") + note
    for ext, fmt in (("md", "markdown"), ("csv", "csv")):  # the files are exactly the renderings
        assert (store.root / f"leaderboard.{ext}").read_bytes() == render(board, fmt).encode("utf-8")
    page = (store.root / "leaderboard.html").read_text()  # the same table (the page also carries the date)
    table = page[page.index('<table id="leaderboard">') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr") == 5 and "72.00 ± 2.00" in table
    assert (
        f"[report] written to {store.root}: leaderboard.{{md,csv,html}}, claims.{{md,csv}}, selectors.{{md,csv}}"
        in caplog.messages
    )


# ---------------------------------------------------------------------------------------------
# plots


def _manifest(name: str, seed: int) -> dict:
    return {
        "name": name,
        "arch": "cnn1d_small",
        "dataset": "mnist1d",
        "seed": seed,
        "epochs": 20,
        "finished": True,
        "checkpoints": [
            {
                "epoch": e,
                "train_acc": 0.5 + e / 50,
                "val_acc": 0.5 + e / 45,
                "test_acc": 0.5 + e / 44,
                "train_loss": 1.0 / e,
                "sha256": "0" * 64,
                "file": f"ckpt-e{e:04d}.pt",
            }
            for e in (5, 10, 15, 20)
        ],
        "history": [
            {
                "epoch": e,
                "lr": 0.1,
                "train_loss_running": 1.0 / e,
                "train_acc_running": 0.5 + e / 50,
                "val_acc": 0.5 + e / 45,
                "seconds": 0.1,
            }
            for e in range(1, 21)
        ],
    }


@pytest.fixture
def plot_store(tmp_path, rows) -> CheckpointStore:
    store = CheckpointStore(tmp_path, "exp")
    for i, name in enumerate((TRAJ0, TRAJ1)):
        atomic_write_json(store.trajectory(name).manifest_path, _manifest(name, i))
    for e in (5, 10, 15, 20):
        for s in range(2):
            store.append_result(row(f"epoch:{e}", s, 0.7 + e / 1000, 0.7 + e / 900 + s / 100, ckpts=[(TRAJ0, e)]))
    for r in rows:
        store.append_result(r)
    return store


def test_plots_write_pngs_and_skip_missing_information_plane(plot_store, caplog):
    caplog.set_level(logging.INFO, logger="harness")
    paths = make_plots(experiment(plot_store.root.parent))  # (the rows `experiment`'s report counts)
    names = sorted(p.name for p in paths)
    # every row learned from one trajectory: no interval, so no forest plot (and the log says why)
    assert names == ["acc_vs_teacher_epoch-cnn1d_small-mnist1d.png", "ensemble_comparison.png"]
    assert any("forest: skipped" in line and "2 or more trajectories" in line for line in caplog.messages)
    for p in paths:
        assert p.parent == plot_store.root / "plots" and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("information plane: skipped" in line and "ckd score" in line for line in caplog.messages)
    assert [m for m in caplog.messages if m.startswith("[plot] wrote")] == [f"[plot] wrote {p}" for p in paths]


def test_information_plane_plot_from_scorer_rows(plot_store, monkeypatch):
    atomic_write_json(plot_store.scores_dir / f"{TRAJ0}.json", {"trajectory": TRAJ0})
    calls = []

    def information_plane(store, trajectory_name=None):  # the scorer's documented interface
        calls.append(store.root)
        return [
            {"trajectory": t, "epoch": e, "estimator": est, "i_x": 1.0 + e / 10 + k, "i_y": 0.5 + e / 40}
            for t in (TRAJ0, TRAJ1)
            for e in (5, 10, 15, 20)
            for k, est in enumerate(("kde", "recon"))
        ] + [{"trajectory": TRAJ0, "epoch": 5, "estimator": "accuracy", "i_x": None, "i_y": 0.3}]

    monkeypatch.setitem(
        sys.modules, "harness.scoring.plane", types.SimpleNamespace(information_plane=information_plane)
    )
    paths = make_plots(experiment(plot_store.root.parent))
    plane = plot_store.root / "plots" / "information_plane.png"
    assert plane in paths and plane.read_bytes()[:4] == b"\x89PNG" and calls == [plot_store.root]


def test_plots_with_an_empty_store_skip_everything(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="harness")
    assert make_plots(experiment(tmp_path)) == []
    assert sum("skipped" in line for line in caplog.messages) == 5
    plot_records = [r for r in caplog.records if r.getMessage().startswith("[plot]")]
    assert len(plot_records) == 5 and {(r.name, r.levelno) for r in plot_records} == {
        ("harness.report.plots", logging.INFO)
    }
    assert not (tmp_path / "exp" / "plots").exists()


def test_plots_count_the_rows_the_report_counts(plot_store, monkeypatch, caplog):
    """`ckd plot` leaves out what the report leaves out: rows of another config (and invalid rows)."""
    caplog.set_level(logging.INFO, logger="harness")
    planted = {**row("full", 8, 0.99, 0.99), "run_id": "0123456789abcdef"}  # valid, but no run of `experiment`
    plot_store.append_result(planted)
    drawn = []
    monkeypatch.setattr("harness.report.plots.draw_plots", lambda store, rows, *a: drawn.append(rows) or [])
    make_plots(experiment(plot_store.root.parent))
    counted = write_report(experiment(plot_store.root.parent), plots=False).rows
    assert drawn == [counted] and planted["run_id"] not in {r["run_id"] for r in counted}
    assert "[plot] left out 1 row(s) of another config (as the report does)" in caplog.messages
