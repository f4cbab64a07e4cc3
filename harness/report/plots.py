"""Report plots (PNG, matplotlib's Agg canvas; matplotlib is imported only when plotting).

- ``forest-<dataset>-<student>.png``: the paired difference of every leaderboard row to
  the reference choice (``report.reference``) with its 95% interval, coloured by verdict.
- ``acc_vs_teacher_epoch-<teacher>-<dataset>.png``: student test accuracy against the epoch of the
  single teacher checkpoint it learned from (mean with a 95% interval; every result row whose
  teacher resolved to one checkpoint), the no-teacher baseline as a band, each selector's picks
  marked; below, the paired difference to the final checkpoint (``full``) as an interval band;
  at the bottom the teacher's own curves from the trajectory manifests.
- ``ensemble_comparison.png``: no teacher, single checkpoints, snapshot and full ensembles as points
  with 95% intervals, each (student seed, teacher trajectory) pair joined by a thin line, the
  teachers' own accuracies written beside (no bars, so no truncated axis misleads).
- ``information_plane.png``: I(X;F) against I(Y;F) for every scored checkpoint, one panel per
  selector, one shared colour bar (epoch), each trajectory's pick T* marked; a panel whose
  estimator is degenerate (constant on an axis) says so instead of drawing one dot.
- ``selector_cost-<dataset>-<teacher>-<student>.png``: every selector's mean regret (95% interval)
  against its cost per trajectory, in student-epochs (left) and seconds (right), from the selector
  evaluation: the proxy budgets joined by a line, the paper's selector, the other estimators, the
  last checkpoint and the brute force (the validation oracle: every checkpoint distilled fully).

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot). A plot whose data is
missing is skipped with a log line saying why.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.config import ExperimentConfig
from harness.report.leaderboard import ENSEMBLE_KINDS, build_leaderboard
from harness.report.paired import compare, single_checkpoint_rows
from harness.report.stats import mean_interval

logger = logging.getLogger(__name__)
VERDICT_COLOURS = {"better": "C2", "worse": "C3", "no detectable difference": "0.35"}

__all__ = ["make_plots", "single_checkpoint_rows"]


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.8), **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _save(fig, path: Path) -> Path:
    from harness.store import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def _kind(choice: str) -> str:
    return str(choice).split(":", 1)[0]


def _interval(b: dict) -> tuple[float, float, float]:
    """(mean, low, high) in percent of an entry's per-pair test accuracies."""
    m, lo, hi = mean_interval(list((b.get("pairs") or {}).values()) or [b["test_mean"]])
    return 100 * m, 100 * (m if math.isnan(lo) else lo), 100 * (m if math.isnan(hi) else hi)


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
        fig, axes = _figure(1, 1, size=(7.0, 1.2 + 0.42 * len(entries)))
        ax = axes[0, 0]
        for y, b in enumerate(entries):
            c = b["vs_ref"]
            colour = VERDICT_COLOURS.get(c["verdict"], "0.35")
            ax.errorbar(
                100 * c["diff_mean"],
                y,
                xerr=[[100 * (c["diff_mean"] - c["diff_ci_low"])], [100 * (c["diff_ci_high"] - c["diff_mean"])]],
                fmt="o",
                color=colour,
                capsize=3,
            )
            ax.annotate(
                f"p(Holm)={c['p_holm']:.2g}, n={c['n']}",
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
        ax.set_title(f"{key[0]}, student {key[1]} (green better, red worse, grey no detectable difference)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        paths.append(_save(fig, out_dir / f"forest-{_slug(key[0])}-{_slug(key[1])}.png"))
    return paths


# ---------------------------------------------------------------------------------------------
# accuracy of the student vs the teacher checkpoint's epoch


def _epoch_of(b: dict) -> int:
    return int(b["teacher_choice"].split(":")[1])


def _epoch_panels(rows: list[dict], reported: str) -> tuple[dict[tuple, dict], dict[tuple, dict[str, list[dict]]]]:
    """Plan: the no-teacher baselines by (dataset, student), and the ``epoch:E`` entries by
    (dataset, teacher) then student, each list sorted by teacher epoch."""
    singles = single_checkpoint_rows(rows)
    board = build_leaderboard(
        singles + [r for r in rows if _kind(r.get("teacher_choice", "")) == "none"], reported=reported, reference="-"
    )
    baselines = {(b["dataset"], b["student_arch"]): b for b in board if _kind(b["teacher_choice"]) == "none"}
    pairs: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for b in board:
        if _kind(b["teacher_choice"]) == "epoch":
            pairs[(b["dataset"], b["teacher_arch"])][b["student_arch"]].append(b)
    for students in pairs.values():
        for entries in students.values():
            entries.sort(key=_epoch_of)
    return baselines, pairs


def _draw_students(ax, entries: list[dict], base: dict | None, colour: str, label: str) -> None:
    """Student accuracy per teacher epoch (mean, 95% band); the no-teacher baseline as a band."""
    xs = [_epoch_of(b) for b in entries]
    iv = [_interval(b) for b in entries]
    ax.plot(xs, [m for m, _, _ in iv], "o-", color=colour, label=label)
    ax.fill_between(xs, [lo for _, lo, _ in iv], [hi for _, _, hi in iv], color=colour, alpha=0.2)
    if base is not None:
        m, lo, hi = _interval(base)
        ax.axhspan(lo, hi, color="0.5", alpha=0.2)
        ax.axhline(m, color="0.4", linestyle="--", linewidth=1, label=f"no teacher ({m:.2f}%, 95% CI band)")


def _draw_picks(ax, picks: dict[str, list[int]]) -> None:
    """Each selector's picks on its own line (marker area = how many trajectories picked it)."""
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
        ax.text(0.5, 0.5, "no scores (run `ckd score`)", ha="center", va="center", transform=ax.transAxes, fontsize=8)
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


def _picks_for(scores: dict[str, dict], dataset: str, t_arch: str) -> dict[str, list[int]]:
    picks: dict[str, list[int]] = defaultdict(list)
    for s in scores.values():
        if s.get("dataset") == dataset and s.get("arch") == t_arch:
            for sel, p in (s.get("selected") or {}).items():
                if isinstance(p, dict) and p.get("epoch") is not None:
                    picks[sel].append(int(p["epoch"]))
    return picks


def plot_accuracy_vs_teacher_epoch(
    rows: list[dict],
    manifests: list[dict],
    out_dir: Path,
    reported: str = "final",
    scores: dict[str, dict] | None = None,
) -> list[Path]:
    """One figure per (dataset, teacher); [] (logged) without single-checkpoint rows."""
    baselines, pairs = _epoch_panels(rows, reported)
    if not pairs:
        logger.info(
            "[plot] accuracy vs teacher epoch: skipped (no student results from single teacher checkpoints; sweep `epoch:E` or `every_checkpoint`)"
        )
        return []
    paths = []
    for (dataset, t_arch), students in sorted(pairs.items(), key=lambda kv: tuple(map(str, kv[0]))):
        fig, axes = _figure(4, 1, size=(7.5, 9.0), sharex=True, gridspec_kw={"height_ratios": [3, 1.3, 2, 2]})
        for i, (s_arch, entries) in enumerate(sorted(students.items())):
            _draw_students(
                axes[0, 0], entries, baselines.get((dataset, s_arch)), f"C{i}", f"{s_arch} <- {t_arch} (mean, 95% CI)"
            )
            _draw_diff_band(axes[2, 0], entries, f"C{i}")
        _draw_picks(axes[1, 0], _picks_for(scores or {}, dataset, t_arch))
        axes[0, 0].set_ylabel("student test acc (%)")
        axes[0, 0].set_title(f"{dataset}: student accuracy vs teacher checkpoint ({reported} epoch)", fontsize=9)
        axes[0, 0].legend(fontsize=7, loc="lower right")
        for ax in (axes[0, 0], axes[2, 0]):
            ax.grid(alpha=0.3)
        _draw_teachers(axes[3, 0], [m for m in manifests if m.get("arch") == t_arch and m.get("dataset") == dataset])
        paths.append(_save(fig, out_dir / f"acc_vs_teacher_epoch-{_slug(t_arch)}-{_slug(dataset)}.png"))
    return paths


# ---------------------------------------------------------------------------------------------
# information plane


def information_plane_rows(store) -> tuple[list[dict], str | None]:
    """Rows (trajectory, epoch, estimator, i_x, i_y) from the scorer, or ([], why not)."""
    if not store.scores_dir.is_dir() or not any(store.scores_dir.glob("*.json")):
        return [], f"no scores in {store.scores_dir} (run `ckd score`)"
    try:
        from harness.scoring import information_plane
    except ImportError as e:
        return [], f"harness.scoring.information_plane is not available ({e})"
    try:
        rows = [r for r in information_plane(store) if r.get("i_x") is not None and r.get("i_y") is not None]
    except Exception as e:  # a scores file from another version, a half-written store, ...
        return [], f"reading the scores failed: {type(e).__name__}: {e}"
    return rows, None if rows else "the scores have no estimator with both I(X;F) and I(Y;F)"


def degenerate_axes(points: list[dict]) -> list[str]:
    """The axes on which an estimator's values are (numerically) constant, in words."""
    out = []
    for axis, name in (("i_x", "I(X;F)"), ("i_y", "I(Y;F)")):
        vals = [float(p[axis]) for p in points]
        if max(vals) - min(vals) <= 1e-9 * max(1.0, abs(max(vals))):
            out.append(f"{name} = {vals[0]:.4g} at every checkpoint")
    return out


def _plane_panel(ax, est: str, points: list[dict], picks: dict[tuple, int], norm, cmap):
    """One selector's plane: trajectories joined in grey, checkpoints coloured by epoch, T* starred."""
    bad = degenerate_axes(points)
    if bad:
        ax.text(
            0.5,
            0.5,
            f"{est}: degenerate estimator\n" + "\n".join(bad) + "\n(not drawn)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=8,
        )
    else:
        trajs: dict[str, list[dict]] = defaultdict(list)
        for r in points:
            trajs[str(r["trajectory"])].append(r)
        for name, pts in trajs.items():
            pts.sort(key=lambda r: r["epoch"])
            ax.plot([p["i_x"] for p in pts], [p["i_y"] for p in pts], color="0.7", linewidth=0.8, zorder=1)
            star = [p for p in pts if picks.get((name, est)) == p["epoch"]]
            if star:
                ax.scatter(
                    [star[0]["i_x"]],
                    [star[0]["i_y"]],
                    marker="*",
                    s=220,
                    facecolor="none",
                    edgecolor="red",
                    linewidth=1.2,
                    zorder=3,
                )
        se = [
            [v if isinstance(v, (int, float)) and v == v else 0.0 for v in (r.get("i_x_se"), r.get("i_y_se"))]
            for r in points
        ]
        ax.errorbar(
            [r["i_x"] for r in points],
            [r["i_y"] for r in points],
            xerr=[s[0] for s in se],
            yerr=[s[1] for s in se],
            fmt="none",
            ecolor="0.55",
            elinewidth=0.8,
            capsize=2,
            zorder=1.5,
        )  # ±1 SE from the scorer's replicates
        ax.scatter(
            [r["i_x"] for r in points],
            [r["i_y"] for r in points],
            c=[r["epoch"] for r in points],
            cmap=cmap,
            norm=norm,
            s=28,
            zorder=2,
        )
    first = points[0]
    via = [
        f"{a}: {first[k]}"
        for a, k in (("X", "x_estimator"), ("Y", "y_estimator"))
        if first.get(k) and first.get(k) != est
    ]
    ax.set_title(est + (f" ({', '.join(via)})" if via else ""), fontsize=9)
    ax.set_xlabel("I(X;F) (nats)")
    ax.set_ylabel("I(Y;F) (nats)")
    ax.grid(alpha=0.3)


def plot_information_plane(rows: list[dict], out_dir: Path, scores: dict[str, dict] | None = None) -> Path:
    """One panel per selector, one shared colour bar; red stars: each trajectory's pick T*."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    by_est: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_est[str(r["estimator"])].append(r)
    picks = {
        (t, sel): int(p["epoch"])
        for t, s in (scores or {}).items()
        for sel, p in (s.get("selected") or {}).items()
        if isinstance(p, dict) and p.get("epoch") is not None
    }
    ests = sorted(by_est)
    ncols = min(3, len(ests))
    nrows = (len(ests) + ncols - 1) // ncols
    fig, axes = _figure(nrows, ncols, size=(max(6.0, 4.4 * ncols), 3.8 * nrows + 0.6))
    epochs = [float(r["epoch"]) for r in rows]
    norm, cmap = (
        Normalize(min(epochs), max(epochs) if max(epochs) > min(epochs) else min(epochs) + 1),
        colormaps["viridis"],
    )
    for k, est in enumerate(ests):
        _plane_panel(axes[k // ncols, k % ncols], est, by_est[est], picks, norm, cmap)
    for k in range(len(ests), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), label="teacher epoch", shrink=0.9)
    fig.suptitle(
        "Information plane of the teacher checkpoints (grey lines join one trajectory; red star: its pick T*)",
        fontsize=9,
    )
    return _save(fig, out_dir / "information_plane.png")


# ---------------------------------------------------------------------------------------------
# ensemble comparison

CATEGORIES = [  # (label, colour, predicate on the choice kind)
    ("no teacher", "0.5", lambda k: k == "none"),
    ("single checkpoint", "C0", lambda k: k in ("full", "fraction", "selected")),  # epoch:E left out (many)
    ("snapshot ensemble", "C2", lambda k: k in ("snapshot", "selected_ensemble")),
    ("full ensemble", "C3", lambda k: k == "full_ensemble"),
]


def _category(choice: str) -> int | None:
    k = _kind(choice)
    return next((i for i, (_, _, pred) in enumerate(CATEGORIES) if pred(k)), None)


def _ensemble_panels(board: list[dict]) -> dict[tuple, list[dict]]:
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for b in board:
        if b["teacher_arch"] is not None and _category(b["teacher_choice"]) is not None:
            panels[(b["dataset"], b["teacher_arch"], b["student_arch"])].append(b)
    panels = {k: v for k, v in panels.items() if any(_kind(b["teacher_choice"]) in ENSEMBLE_KINDS for b in v)}
    for (dataset, _, s_arch), entries in panels.items():
        entries += [
            b
            for b in board
            if _kind(b["teacher_choice"]) == "none" and b["dataset"] == dataset and b["student_arch"] == s_arch
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
    fig, axes = _figure(len(keys), 1, size=(max(6.0, 1.2 * max(len(v) for v in panels.values()) + 2), 3.8 * len(keys)))
    for ax, key in zip(axes[:, 0], keys):
        entries = panels[key]
        _seed_lines(ax, entries)
        for x, b in enumerate(entries):
            m, lo, hi = _interval(b)
            ax.errorbar(
                [x],
                [m],
                yerr=[[m - lo], [hi - m]],
                fmt="o",
                markersize=7,
                capsize=4,
                color=CATEGORIES[_category(b["teacher_choice"])][1],
                zorder=2,
            )
            label = f"n={b['n']}" + (
                "" if b["teacher_test_acc"] is None else f"\nteacher {100 * b['teacher_test_acc']:.1f}%"
            )
            ax.annotate(label, (x, hi), xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(entries)), [b["teacher_choice"] for b in entries], rotation=20, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(entries) - 0.4)
        ax.set_ylabel("student test acc (%)")
        ax.set_title(f"{key[0]}: {key[1]} -> {key[2]} (mean, 95% CI; grey lines: one student seed each)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)
    from matplotlib.lines import Line2D

    fig.legend(
        handles=[Line2D([], [], marker="o", linestyle="", color=c, label=l) for l, c, _ in CATEGORIES],
        loc="outside lower center",
        ncol=len(CATEGORIES),
        fontsize=8,
    )
    return _save(fig, out_dir / "ensemble_comparison.png")


# ---------------------------------------------------------------------------------------------

COST_AXES = (("student_epochs", "student-epochs per trajectory", 1.0), ("cost_s", "seconds per trajectory", 0.1))


def _cost_style(selector: str) -> tuple[str, str]:
    """(colour, marker) of a row of the selector evaluation."""
    if selector.startswith("proxy"):
        return "C1", "o"
    if selector == "paper":
        return "C0", "s"
    if selector == "oracle (val)":
        return "C2", "*"
    if selector == "last checkpoint (full)":
        return "0.2", "v"
    return "0.55", "D"


def _cost_panel(ax, rows: list[dict], field: str, label: str, linthresh: float) -> None:
    """Regret (mean, 95% CI) against one cost axis; proxy budgets joined in order of cost."""
    placed = [r for r in rows if r.get(field) is not None]
    same_x: dict[float, list[dict]] = defaultdict(list)  # labels of points at one cost are spread apart
    for r in sorted(placed, key=lambda r: -r["regret_pp"]):
        same_x[round(float(r[field]), 6)].append(r)
    for r in placed:
        colour, marker = _cost_style(r["selector"])
        m, lo, hi = r["regret_pp"], r["regret_ci_low"], r["regret_ci_high"]
        err = None if math.isnan(lo) else [[m - lo], [hi - m]]
        ax.errorbar(
            [r[field]], [m], yerr=err, fmt=marker, color=colour, markersize=7 if marker == "*" else 5, capsize=3
        )
        name = "brute force (oracle)" if r["selector"] == "oracle (val)" else r["selector"]
        group = same_x[round(float(r[field]), 6)]
        dy = 9 * ((len(group) - 1) / 2 - group.index(r))
        ax.annotate(
            name, (r[field], m), xytext=(6, dy), textcoords="offset points", fontsize=7, color=colour, va="center"
        )
    proxies = sorted((r for r in placed if r["selector"].startswith("proxy")), key=lambda r: r[field])
    if len(proxies) > 1:
        ax.plot([r[field] for r in proxies], [r["regret_pp"] for r in proxies], "-", color="C1", alpha=0.5)
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.axhline(0.0, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_xlabel(f"{label} (symlog)")
    ax.set_ylabel("regret vs validation oracle (pp, test)")
    ax.grid(alpha=0.3)


def plot_selector_cost(selectors: dict, out_dir: Path) -> list[Path]:
    """One figure per (dataset, teacher, student) group of the selector evaluation (module doc)."""
    paths = []
    for key, g in (selectors.get("groups") or {}).items():
        fig, axes = _figure(1, 2, size=(12.0, 4.6))
        for ax, (field, label, linthresh) in zip(axes[0], COST_AXES):
            _cost_panel(ax, g["rows"], field, label, linthresh)
        fig.suptitle(
            f"{key[0]}: {key[1]} -> {key[2]}: regret against compute per trajectory "
            f"({len(g['trajectories'])} trajectories; mean, 95% CI)",
            fontsize=9,
        )
        paths.append(_save(fig, out_dir / f"selector_cost-{_slug(key[0])}-{_slug(key[1])}-{_slug(key[2])}.png"))
    return paths


def make_plots(cfg: ExperimentConfig, reported: str = "final") -> list[Path]:
    """Write every plot whose data exists under ``<storage>/<name>/plots/``; return the paths."""
    from harness.report.leaderboard import board_for
    from harness.report.selectors import read_all_scores
    from harness.store import CheckpointStore

    store = CheckpointStore(cfg.storage, cfg.name)
    rows, scores = store.read_results(), read_all_scores(store)
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
    from harness.report.selectors import evaluate_selectors

    out_dir = store.root / "plots"
    paths = plot_forest(board, out_dir)
    selectors = evaluate_selectors(rows, scores, reported) if selectors is None else selectors
    cost = plot_selector_cost(selectors, out_dir)
    if not cost:
        logger.info("[plot] regret against compute: skipped (no trajectory has students for every checkpoint)")
    paths += cost
    paths += plot_accuracy_vs_teacher_epoch(
        rows, [t.manifest() for t in store.trajectories()], out_dir, reported, scores
    )
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
