"""Report plots (PNG, matplotlib's Agg canvas; matplotlib is imported only when plotting).

- ``forest-<dataset>-<student>.png``: the paired difference of every leaderboard row to
  the reference choice (``report.reference``) with its 95% interval, coloured by answer.
- ``acc_vs_teacher_epoch-<teacher>-<dataset>.png``: student test accuracy against the epoch of the
  single teacher checkpoint it learned from (mean with a 95% interval; every result row whose
  teacher resolved to one checkpoint), the no-teacher baseline as a band, each selector's picks
  marked; below, the paired difference to the final checkpoint (``full``) as an interval band;
  at the bottom the teacher's own curves from the trajectory manifests.
- ``ensemble_comparison.png``: no teacher, single checkpoints, snapshot and full ensembles as points
  with 95% intervals, each (student seed, teacher trajectory) pair joined by a thin line, the
  teachers' own accuracies written beside (no bars, so no truncated axis misleads).
- ``information_plane.png``: I(X;F) against I(Y;F) for every scored checkpoint, one panel per
  selector, one shared colour bar (epoch), each trajectory's pick T* marked; a degenerate selector
  (constant on an axis, or tied on every checkpoint) gets no panel and no pick, a footnote line.
- ``selector_cost-<dataset>-<teacher>-<student>.png``: every selector's mean regret (95% interval)
  against its cost per trajectory, in student-epochs (left) and seconds (right), from the selector
  evaluation: the proxy budgets joined by a line, the paper's selector, the other estimators, the
  last checkpoint and the brute force (the validation oracle: every checkpoint distilled fully).

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot; ``harness.report.figure``).
This module draws the forest plot and the ensemble comparison and runs every plot; the others
live in ``epoch_plot``, ``plane_plot`` and ``selector_plot``. A plot whose data is missing is
skipped with a log line saying why (logger ``harness.report.plots``).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.config import ExperimentConfig
from harness.report.board import board_for, rows_of_config
from harness.report.epoch_plot import plot_accuracy_vs_teacher_epoch
from harness.report.figure import figure, interval, save, slug
from harness.report.plane_plot import information_plane_rows, plot_information_plane
from harness.report.selector_plot import plot_selector_cost
from harness.report.selectors import evaluate_selectors
from harness.scoring.scores_file import read_all_scores
from harness.teacher_choices import CATEGORIES, FULL_ENSEMBLE, NO_TEACHER, SINGLE, SNAPSHOT_ENSEMBLE, choice_of

logger = logging.getLogger(__name__)
ANSWER_COLOURS = {"better": "C2", "worse": "C3", "equivalent": "C0", "undecided": "0.35"}


# ---------------------------------------------------------------------------------------------
# forest plot


def plot_forest(board: list[dict], out_dir: Path) -> list[Path]:
    """One forest plot per (dataset, teacher, student) with paired comparisons to the reference."""
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for b in board:
        c = b.get("vs_ref")
        if c and not c.get("self") and not math.isnan(c["diff_ci_low"]):
            panels[(b["dataset"], b["student_arch"])].append(b)
    paths = []
    for key, entries in sorted(panels.items(), key=lambda kv: tuple(map(str, kv[0]))):
        entries.sort(key=lambda b: b["vs_ref"]["diff_mean"])
        several = len({b["teacher_arch"] for b in entries if b["teacher_arch"]}) > 1
        fig, axes = figure(1, 1, size=(7.0, 1.2 + 0.42 * len(entries)))
        ax = axes[0, 0]
        for y, b in enumerate(entries):
            c = b["vs_ref"]
            colour = ANSWER_COLOURS.get(c.get("answer"), "0.35")
            ax.errorbar(
                100 * c["diff_mean"],
                y,
                xerr=[[100 * (c["diff_mean"] - c["diff_ci_low"])], [100 * (c["diff_ci_high"] - c["diff_mean"])]],
                fmt="o",
                color=colour,
                capsize=3,
            )
            ax.annotate(
                f"p(Holm)={c['p_holm']:.2g}, n={c['n']} traj ({c['students']} students)",
                (1.01, y),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                va="center",
            )
        ax.axvline(0.0, color="k", linewidth=0.8)
        ax.set_yticks(
            range(len(entries)),
            [f"{b['teacher_arch']}: " * bool(several and b["teacher_arch"]) + b["teacher_choice"] for b in entries],
            fontsize=8,
        )
        ax.set_xlabel(f"paired difference to {entries[0]['vs_ref']['ref']} (pp, 95% CI)")
        ax.set_title(f"{key[0]}, student {key[1]}: green better, red worse, blue equivalent, grey undecided", size=8)
        ax.grid(axis="x", alpha=0.3)
        paths.append(save(fig, out_dir / f"forest-{slug(key[0])}-{slug(key[1])}.png"))
    return paths


# ---------------------------------------------------------------------------------------------
# ensemble comparison

CATEGORY_COLOURS = {NO_TEACHER: "0.5", SINGLE: "C0", SNAPSHOT_ENSEMBLE: "C2", FULL_ENSEMBLE: "C3"}


def _category(choice: str) -> int | None:
    """The position of the choice's category in ``CATEGORIES`` (None: not compared; ``epoch:E``
    is left out, a sweep has too many)."""
    category = choice_of(choice).category
    return None if category is None else CATEGORIES.index(category)


def _ensemble_panels(board: list[dict]) -> dict[tuple, list[dict]]:
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for b in board:
        if b["teacher_arch"] is not None and _category(b["teacher_choice"]) is not None:
            panels[(b["dataset"], b["teacher_arch"], b["student_arch"])].append(b)
    panels = {k: v for k, v in panels.items() if any(choice_of(b["teacher_choice"]).is_ensemble for b in v)}
    for (dataset, _, s_arch), entries in panels.items():
        entries += [
            b
            for b in board
            if choice_of(b["teacher_choice"]).is_none and b["dataset"] == dataset and b["student_arch"] == s_arch
        ]
        entries.sort(key=lambda b: (_category(b["teacher_choice"]), -b["test_mean"]))
    return panels


def _seed_lines(ax, entries: list[dict]) -> None:
    """Thin grey lines joining each student seed's accuracies across the choices."""
    seeds = sorted({k[0] for b in entries for k in (b.get("pairs") or {})}, key=str)
    for s in seeds:
        xs, ys = [], []
        for x, b in enumerate(entries):
            vals = [v for k, v in (b.get("pairs") or {}).items() if k[0] == s]
            if vals:
                xs.append(x)
                ys.append(100 * sum(vals) / len(vals))
        ax.plot(xs, ys, color="0.6", linewidth=0.7, alpha=0.7, zorder=1)


def plot_ensemble_comparison(board: list[dict], out_dir: Path) -> Path | None:
    """Points (mean, 95% CI) per teacher choice, seeds joined; None without an ensemble choice."""
    panels = _ensemble_panels(board)
    if not panels:
        return None
    keys = sorted(panels, key=lambda k: tuple(map(str, k)))
    fig, axes = figure(len(keys), 1, size=(max(6.0, 1.2 * max(len(v) for v in panels.values()) + 2), 3.8 * len(keys)))
    for ax, key in zip(axes[:, 0], keys):
        entries = panels[key]
        _seed_lines(ax, entries)
        for x, b in enumerate(entries):
            m, lo, hi = interval(b)
            ax.errorbar(
                [x],
                [m],
                yerr=[[m - lo], [hi - m]],
                fmt="o",
                markersize=7,
                capsize=4,
                color=CATEGORY_COLOURS[CATEGORIES[_category(b["teacher_choice"])]],
                zorder=2,
            )
            label = f"n={b['n']}" + (
                "" if b["teacher_test_acc"] is None else f"\nteacher {100 * b['teacher_test_acc']:.1f}%"
            )
            ax.annotate(label, (x, hi), xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ticks = [str(choice_of(b["teacher_choice"])) for b in entries]
        ax.set_xticks(range(len(entries)), ticks, rotation=20, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(entries) - 0.4)
        ax.set_ylabel("student test acc (%)")
        ax.set_title(f"{key[0]}: {key[1]} -> {key[2]} (mean, 95% CI; grey lines: one student seed each)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)
    from matplotlib.lines import Line2D

    fig.legend(
        handles=[Line2D([], [], marker="o", linestyle="", color=CATEGORY_COLOURS[c], label=c) for c in CATEGORIES],
        loc="outside lower center",
        ncol=len(CATEGORIES),
        fontsize=8,
    )
    return save(fig, out_dir / "ensemble_comparison.png")


# ---------------------------------------------------------------------------------------------


def make_plots(cfg: ExperimentConfig, reported: str = "final") -> list[Path]:
    """Write every plot whose data exists under ``<storage>/<name>/plots/``; return the paths.
    Plots the rows the report counts (``board.rows_of_config``)."""
    from harness.store import CheckpointStore

    store = CheckpointStore(cfg.storage, cfg.name)
    rows, foreign = rows_of_config(cfg, store.read_results())
    if foreign:
        logger.info("[plot] left out %d row(s) of another config (as the report does)", foreign)
    scores = read_all_scores(store)
    return draw_plots(store, rows, scores, board_for(cfg, rows, scores, reported), reported)


def draw_plots(
    store: Any,
    rows: list[dict],
    scores: dict[str, dict],
    board: list[dict],
    reported: str = "final",
    selectors: dict | None = None,
) -> list[Path]:
    """The plots of ``make_plots`` from rows, scores, a board and (else computed) the selector
    evaluation the caller already has."""
    out_dir = store.root / "plots"
    paths = plot_forest(board, out_dir)
    if not paths:
        why = "no comparison with the reference has 2 or more trajectories" if board else "no student results"
        logger.info("[plot] forest: skipped (%s)", why)
    selectors = evaluate_selectors(rows, scores, reported) if selectors is None else selectors
    cost = plot_selector_cost(selectors, out_dir)
    if not cost:
        logger.info("[plot] regret against compute: skipped (no trajectory has students for every checkpoint)")
    paths += cost
    epoch = plot_accuracy_vs_teacher_epoch(
        rows, [t.manifest() for t in store.trajectories()], out_dir, reported, scores
    )
    if not epoch:
        logger.info(
            "[plot] accuracy vs teacher epoch: skipped (no student results from single teacher checkpoints; "
            "sweep `epoch:E` or `every_checkpoint`)"
        )
    paths += epoch
    plane, why = information_plane_rows(store)
    if plane:
        paths.append(plot_information_plane(plane, out_dir, scores))
    else:
        logger.info("[plot] information plane: skipped (%s)", why)
    p = plot_ensemble_comparison(board, out_dir) if board else None
    if p is not None:
        paths.append(p)
    else:
        logger.info(
            "[plot] ensemble comparison: skipped (%s)",
            "no student results" if not board else "no snapshot or ensemble teacher choices in the results",
        )
    for p in paths:
        logger.info("[plot] wrote %s", p)
    return paths
