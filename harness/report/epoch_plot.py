"""Student accuracy against the teacher checkpoint it learned from (``acc_vs_teacher_epoch-*.png``).

One figure per (dataset, teacher): student test accuracy against the epoch of the single teacher
checkpoint it learned from (mean with a 95% interval; every result row whose teacher resolved to
one checkpoint), the no-teacher baseline as a band, each selector's picks marked; below, the paired
difference to the final checkpoint (``full``) as an interval band; at the bottom the teacher's own
curves from the trajectory manifests. Each point is the mean over teacher trajectories of their
students' mean (the trajectory is the unit of replication). Where the number of trajectories
behind a point (n) varies, the points whose n is not the most common one are labelled ``n=K``, and
n = 1 (no interval) is drawn hollow; the legend says so. A degenerate selector's picks are left
out (named under the panel).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from harness.report.board import build_leaderboard
from harness.report.figure import figure, interval, interval_n, save, slug, spread_labels
from harness.report.paired import compare, single_checkpoint_rows
from harness.scoring import scores_file
from harness.teacher_choices import choice_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _epoch_of(b: dict) -> int:
    return choice_of(b["teacher_choice"]).epoch


def _epoch_panels(rows: list[dict], reported: str) -> tuple[dict[tuple, dict], dict[tuple, dict[str, list[dict]]]]:
    """Plan: the no-teacher baselines by (dataset, student), and the ``epoch:E`` entries by
    (dataset, teacher) then student, each list sorted by teacher epoch."""
    singles = single_checkpoint_rows(rows)
    board = build_leaderboard(
        singles + [r for r in rows if choice_of(r.get("teacher_choice", "")).is_none], reported=reported, reference="-"
    )
    baselines = {(b["dataset"], b["student_arch"]): b for b in board if choice_of(b["teacher_choice"]).is_none}
    pairs: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for b in board:
        if choice_of(b["teacher_choice"]).epoch is not None:
            pairs[(b["dataset"], b["teacher_arch"])][b["student_arch"]].append(b)
    for students in pairs.values():
        for entries in students.values():
            entries.sort(key=_epoch_of)
    return baselines, pairs


def _usual_n(students: dict[str, list[dict]]) -> tuple[int, bool]:
    """(the most common n over a figure's points, whether n varies between them)."""
    ns = [interval_n(b) for entries in students.values() for b in entries]
    return max(set(ns), key=lambda n: (ns.count(n), n)), len(set(ns)) > 1


def _draw_students(ax, entries: list[dict], base: dict | None, colour: str, label: str, usual: int) -> list:
    """Student accuracy per teacher epoch (mean, 95% band; n = 1 hollow, no interval), an ``n=K``
    label at each point whose n is not ``usual`` (returned); the no-teacher baseline as a band."""
    xs = [_epoch_of(b) for b in entries]
    iv = [interval(b) for b in entries]
    ns = [interval_n(b) for b in entries]
    ax.plot(xs, [m for m, _, _ in iv], "o-", color=colour, label=label)
    ax.fill_between(xs, [lo for _, lo, _ in iv], [hi for _, _, hi in iv], color=colour, alpha=0.2)
    ones = [(x, m) for x, (m, _, _), n in zip(xs, iv, ns) if n == 1]
    if ones:
        ax.plot(*zip(*ones), "o", color=colour, markerfacecolor="white", zorder=3)
    labels = [
        ax.annotate(f"n={n}", (x, m), xytext=(5, 5), textcoords="offset points", fontsize=7, color=colour)
        for x, (m, _, _), n in zip(xs, iv, ns)
        if n != usual
    ]
    if base is not None:
        m, lo, hi = interval(base)
        ax.axhspan(lo, hi, color="0.5", alpha=0.2)
        ax.axhline(m, color="0.4", linestyle="--", linewidth=1, label=f"no teacher ({m:.2f}%, 95% CI band)")
    return labels


def _draw_picks(ax, picks: dict[str, list[int]], degenerate: list[str]) -> None:
    """Each selector's picks on its own line (marker area = how many trajectories picked it);
    the selectors whose picks are degenerate (left out) named below."""
    names = sorted(picks)
    for i, sel in enumerate(names):
        counts: dict[int, int] = defaultdict(int)
        for e in picks[sel]:
            counts[e] += 1
        ax.scatter(
            list(counts),
            [i] * len(counts),
            s=[25 * c for c in counts.values()],
            marker="v",
            color=f"C{i + 2}",
            zorder=3,
        )
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_ylim(-0.7, max(len(names), 1) - 0.3)
    ax.set_ylabel("picks T*", fontsize=8)
    if not names:
        why = "no usable picks" if degenerate else "no scores (run `ckd score`)"
        ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=8)
    if degenerate:
        ax.set_title(f"not drawn (degenerate: every checkpoint tied): {', '.join(degenerate)}", fontsize=7, loc="left")
    ax.grid(axis="x", alpha=0.3)


def _draw_diff_band(ax, entries: list[dict], colour: str) -> None:
    """Paired difference of each checkpoint to the last one (= full), mean and 95% band."""
    last = max(entries, key=_epoch_of)
    pts = [(_epoch_of(b), compare(b, last)) for b in entries]
    pts = [(e, c) for e, c in pts if c is not None]
    if not pts:
        return
    xs = [e for e, _ in pts]
    ax.plot(xs, [100 * c["diff_mean"] for _, c in pts], "o-", color=colour)
    ax.fill_between(
        xs,
        [100 * (c["diff_mean"] if math.isnan(c["diff_ci_low"]) else c["diff_ci_low"]) for _, c in pts],
        [100 * (c["diff_mean"] if math.isnan(c["diff_ci_high"]) else c["diff_ci_high"]) for _, c in pts],
        color=colour,
        alpha=0.2,
    )
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_ylabel(f"Δ vs epoch {_epoch_of(last)} (pp)")


def _draw_teachers(tax, curves: list[dict]) -> None:
    """Each teacher trajectory's validation curve and checkpoint test accuracies."""
    for j, m in enumerate(sorted(curves, key=lambda m: str(m.get("name")))):
        hist = [h for h in m.get("history", []) if h.get("val_acc") is not None]
        if hist:
            tax.plot(
                [h["epoch"] for h in hist], [100 * h["val_acc"] for h in hist], color=f"C{j}", linewidth=1, alpha=0.8
            )
        ck = [c for c in m.get("checkpoints", []) if c.get("test_acc") is not None]
        if ck:
            tax.plot([c["epoch"] for c in ck], [100 * c["test_acc"] for c in ck], "s", color=f"C{j}", markersize=3)
    if not curves:
        tax.text(0.5, 0.5, "no teacher manifests in the store", ha="center", va="center", transform=tax.transAxes)
    tax.set_xlabel("teacher epoch")
    tax.set_ylabel("teacher acc (%)\n(line val, squares test)", fontsize=8)
    tax.grid(alpha=0.3)


def _picks_for(scores: dict[str, dict], dataset: str, t_arch: str) -> tuple[dict[str, list[int]], list[str]]:
    """({selector: its picks over the trajectories}, the selectors with a degenerate pick, left out)."""
    picks: dict[str, list[int]] = defaultdict(list)
    degenerate = set()
    for s in scores.values():
        if s.get("dataset") == dataset and s.get("arch") == t_arch:
            for sel, p in scores_file.picks(s).items():
                if p.degenerate:
                    degenerate.add(sel)
                elif p.epoch is not None:
                    picks[sel].append(p.epoch)
    return picks, sorted(degenerate)


def _n_legend(ax, usual: int, varies: bool) -> None:
    """The legend, above the panel (clear of the n labels), with a line saying what n is."""
    from matplotlib.lines import Line2D

    n_line = (
        f"n = {usual} teacher trajectories per point unless labelled n=K; n=1 (hollow): no interval"
        if varies
        else f"n = {usual} teacher trajectories per point" + ("; no interval" if usual == 1 else "")
    )
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], linestyle="", label=n_line))
    ax.legend(handles=handles, fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.02), ncol=1, frameon=False)


def epoch_figures(
    rows: list[dict], manifests: list[dict], reported: str = "final", scores: dict[str, dict] | None = None
) -> list[tuple[str, Figure]]:
    """(file name, figure) per (dataset, teacher) of ``plot_accuracy_vs_teacher_epoch``."""
    baselines, pairs = _epoch_panels(rows, reported)
    out = []
    for (dataset, t_arch), students in sorted(pairs.items(), key=lambda kv: tuple(map(str, kv[0]))):
        fig, axes = figure(4, 1, size=(7.5, 9.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3, 2, 2]})
        usual, varies = _usual_n(students)
        labels = []
        for i, (s_arch, entries) in enumerate(sorted(students.items())):
            base = baselines.get((dataset, s_arch))
            labels += _draw_students(axes[0, 0], entries, base, f"C{i}", f"{s_arch} <- {t_arch} (mean, 95% CI)", usual)
            _draw_diff_band(axes[2, 0], entries, f"C{i}")
        _draw_picks(axes[1, 0], *_picks_for(scores or {}, dataset, t_arch))
        axes[0, 0].set_ylabel("student test acc (%)")
        fig.suptitle(f"{dataset}: student accuracy vs teacher checkpoint ({reported} epoch)", fontsize=9)
        _n_legend(axes[0, 0], usual, varies)
        axes[0, 0].margins(y=0.12)
        for ax in (axes[0, 0], axes[2, 0]):
            ax.grid(alpha=0.3)
        _draw_teachers(axes[3, 0], [m for m in manifests if m.get("arch") == t_arch and m.get("dataset") == dataset])
        spread_labels(fig, labels)
        out.append((f"acc_vs_teacher_epoch-{slug(t_arch)}-{slug(dataset)}.png", fig))
    return out


def plot_accuracy_vs_teacher_epoch(
    rows: list[dict],
    manifests: list[dict],
    out_dir: Path,
    reported: str = "final",
    scores: dict[str, dict] | None = None,
) -> list[Path]:
    """One figure per (dataset, teacher); [] without single-checkpoint rows."""
    return [save(fig, out_dir / name) for name, fig in epoch_figures(rows, manifests, reported, scores)]
