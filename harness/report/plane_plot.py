"""The information plane (``information_plane.png``): I(X;F) against I(Y;F) for every scored
checkpoint, one panel per selector (the paper's first), one shared colour bar (epoch), each
trajectory's pick T* marked. A degenerate selector (constant on an axis, or every checkpoint tied
in every trajectory: ``selected[sel].degenerate``) gets no panel and no pick, only a line in the
footnote; a pick flagged degenerate in some trajectories only is not drawn (footnote says where)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from harness.report.figure import figure, footnote, save
from harness.scoring import scores_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def information_plane_rows(store) -> tuple[list[dict], str | None]:
    """Rows (trajectory, epoch, estimator, i_x, i_y) from the scorer, or ([], why not)."""
    if not scores_file.scored_trajectories(store):
        return [], f"no scores in {store.scores_dir} (run `ckd score`)"
    try:
        from harness.scoring.plane import information_plane
    except ImportError as e:
        return [], f"harness.scoring.plane.information_plane is not available ({e})"
    try:
        rows = [r for r in information_plane(store) if r.get("i_x") is not None and r.get("i_y") is not None]
    except Exception as e:  # a scores file from another version, a half-written store, ...
        return [], f"reading the scores failed: {type(e).__name__}: {e}"
    return rows, None if rows else "the scores have no estimator with both I(X;F) and I(Y;F)"


def degenerate_axes(points: list[dict]) -> list[str]:
    """The axes on which an estimator's values are (numerically) constant, in words (``I(X;F) = 4.6``)."""
    out = []
    for axis, name in (("i_x", "I(X;F)"), ("i_y", "I(Y;F)")):
        vals = [float(p[axis]) for p in points]
        if max(vals) - min(vals) <= 1e-9 * max(1.0, abs(max(vals))):
            out.append(f"{name} = {vals[0]:.4g}")
    return out


def degenerate_selectors(
    by_est: dict[str, list[dict]], flagged: dict[str, set[str]]
) -> tuple[dict[str, str], list[str]]:
    """({selector: why it gets no panel}, footnote lines): constant on an axis, or flagged
    degenerate (``flagged``: selector -> trajectories) in every trajectory it has points for; a
    selector flagged in some trajectories only keeps its panel, and a line says whose pick is left out."""
    dropped, lines = {}, []
    for est in sorted(by_est):
        trajs = {str(p["trajectory"]) for p in by_est[est]}
        bad = degenerate_axes(by_est[est])
        hit = flagged.get(est, set()) & trajs
        if bad:
            dropped[est] = f"constant on every checkpoint ({'; '.join(bad)}: saturated)"
        elif hit == trajs:
            dropped[est] = f"every checkpoint scores the same (degenerate in {len(hit)} of {len(trajs)} trajectories)"
        elif hit:
            lines.append(f"{est}: degenerate in {', '.join(sorted(hit))}; no pick drawn there")
    return dropped, [f"{est}: {why}; not drawn" for est, why in dropped.items()] + lines


def _plane_panel(ax, est: str, points: list[dict], picks: dict[tuple, int], norm, cmap) -> None:
    """One selector's plane: trajectories joined in grey, checkpoints coloured by epoch, T* starred."""
    _trajectory_paths(ax, est, points, picks)
    _checkpoint_points(ax, points, norm, cmap)
    _label_panel(ax, est, points[0])


def _trajectory_paths(ax, est: str, points: list[dict], picks: dict[tuple, int]) -> None:
    """Each trajectory's checkpoints joined in epoch order (grey); its pick T* as a red star."""
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


def _finite_or_zero(value) -> float:
    return value if isinstance(value, (int, float)) and value == value else 0.0


def _checkpoint_points(ax, points: list[dict], norm, cmap) -> None:
    """Every checkpoint coloured by epoch, with ±1 SE bars from the scorer's replicates."""
    xs, ys = [r["i_x"] for r in points], [r["i_y"] for r in points]
    xerr = [_finite_or_zero(r.get("i_x_se")) for r in points]
    yerr = [_finite_or_zero(r.get("i_y_se")) for r in points]
    ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor="0.55", elinewidth=0.8, capsize=2, zorder=1.5)
    ax.scatter(xs, ys, c=[r["epoch"] for r in points], cmap=cmap, norm=norm, s=28, zorder=2)


def _label_panel(ax, est: str, first: dict) -> None:
    """Title (with the estimators behind a selector, when named otherwise), axis labels, grid."""
    via = [
        f"{a}: {first[k]}"
        for a, k in (("X", "x_estimator"), ("Y", "y_estimator"))
        if first.get(k) and first.get(k) != est
    ]
    ax.set_title(est + (f" ({', '.join(via)})" if via else ""), fontsize=9)
    ax.set_xlabel("I(X;F) (nats)")
    ax.set_ylabel("I(Y;F) (nats)")
    ax.grid(alpha=0.3)


def _picks(scores: dict[str, dict]) -> tuple[dict[tuple, int], dict[str, set[str]]]:
    """({(trajectory, selector): T*} for the picks that are real, {selector: trajectories where
    it is degenerate}); a degenerate pick (even one taken from a fallback) is not this selector's."""
    picks, flagged = {}, defaultdict(set)
    for t, s in scores.items():
        for sel, p in scores_file.picks(s).items():
            if p.degenerate:
                flagged[sel].add(str(t))
            elif p.epoch is not None:
                picks[(str(t), sel)] = p.epoch
    return picks, flagged


def _panel_order(names: list[str]) -> list[str]:
    """The paper's selector first, then the others by name."""
    return sorted(names, key=lambda n: (n != "paper", n))


def information_plane_figure(rows: list[dict], scores: dict[str, dict] | None = None) -> Figure:
    """The figure of ``plot_information_plane`` (module doc)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    by_est: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_est[str(r["estimator"])].append(r)
    picks, flagged = _picks(scores or {})
    dropped, notes = degenerate_selectors(by_est, flagged)
    ests = _panel_order([e for e in by_est if e not in dropped])
    ncols = max(1, min(3, len(ests)))
    nrows = max(1, (len(ests) + ncols - 1) // ncols)
    fig, axes = figure(nrows, ncols, size=(max(6.0, 4.4 * ncols), 3.8 * nrows + 0.6 + 0.15 * len(notes)))
    epochs = [float(r["epoch"]) for e in ests for r in by_est[e]] or [0.0]
    norm = Normalize(min(epochs), max(epochs) if max(epochs) > min(epochs) else min(epochs) + 1)
    cmap = colormaps["viridis"]
    for k, est in enumerate(ests):
        _plane_panel(axes[k // ncols, k % ncols], est, by_est[est], picks, norm, cmap)
    for k in range(len(ests), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    if ests:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), label="teacher epoch", shrink=0.9)
    fig.suptitle(
        "Information plane of the teacher checkpoints (grey lines join one trajectory; red star: its pick T*)"
        if ests
        else "Information plane: no selector with a non-degenerate plane (see below)",
        fontsize=9,
    )
    footnote(fig, notes)
    return fig


def plot_information_plane(rows: list[dict], out_dir: Path, scores: dict[str, dict] | None = None) -> Path:
    """One panel per selector that is not degenerate, one shared colour bar; red stars: each
    trajectory's pick T*; the degenerate ones in a footnote (module doc)."""
    return save(information_plane_figure(rows, scores), out_dir / "information_plane.png")
