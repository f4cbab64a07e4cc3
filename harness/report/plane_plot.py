"""The information plane (``information_plane.png``): I(X;F) against I(Y;F) for every scored
checkpoint, one panel per selector, one shared colour bar (epoch), each trajectory's pick T*
marked; a panel whose estimator is degenerate (constant on an axis) says so instead of drawing
one dot."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from harness.report.figure import figure, save
from harness.scoring import scores_file


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
    """The axes on which an estimator's values are (numerically) constant, in words."""
    out = []
    for axis, name in (("i_x", "I(X;F)"), ("i_y", "I(Y;F)")):
        vals = [float(p[axis]) for p in points]
        if max(vals) - min(vals) <= 1e-9 * max(1.0, abs(max(vals))):
            out.append(f"{name} = {vals[0]:.4g} at every checkpoint")
    return out


def _plane_panel(ax, est: str, points: list[dict], picks: dict[tuple, int], norm, cmap):
    """One selector's plane: trajectories joined in grey, checkpoints coloured by epoch, T* starred
    (or, for a degenerate estimator, a note saying why nothing is drawn)."""
    bad = degenerate_axes(points)
    if bad:
        note = f"{est}: degenerate estimator\n" + "\n".join(bad) + "\n(not drawn)"
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, fontsize=8)
    else:
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


def plot_information_plane(rows: list[dict], out_dir: Path, scores: dict[str, dict] | None = None) -> Path:
    """One panel per selector, one shared colour bar; red stars: each trajectory's pick T*."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    by_est: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_est[str(r["estimator"])].append(r)
    picks = {
        (t, sel): p.epoch
        for t, s in (scores or {}).items()
        for sel, p in scores_file.picks(s).items()
        if p.epoch is not None
    }
    ests = sorted(by_est)
    ncols = min(3, len(ests))
    nrows = (len(ests) + ncols - 1) // ncols
    fig, axes = figure(nrows, ncols, size=(max(6.0, 4.4 * ncols), 3.8 * nrows + 0.6))
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
    return save(fig, out_dir / "information_plane.png")
