"""What every report plot shares: a figure on matplotlib's Agg canvas (no pyplot; matplotlib is
imported only when plotting), an atomic PNG write, file-name slugs, an entry's 95% interval and
its size n, a footnote under a figure and labels moved apart until none overlap (``spread_labels``)."""

from __future__ import annotations

import io
import math
import re
from itertools import combinations
from pathlib import Path

from harness.report.stats import mean_interval


def figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.8), **kw):
    """A constrained-layout figure on an Agg canvas (so text extents can be measured) and its
    2-d array of axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG (dpi 110) atomically; return ``path``."""
    from harness.fileio import atomic_write_bytes  # harness.fileio imports torch

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return path


def slug(text: str) -> str:
    """``text`` made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def cluster_means(b: dict) -> list[float]:
    """An entry's test accuracy per teacher trajectory (its students averaged: the trajectory is
    the unit of replication); per student seed for ``none``, which has no trajectory."""
    groups: dict = {}
    for (seed, teacher_seed), v in (b.get("pairs") or {}).items():
        groups.setdefault(("s", seed) if teacher_seed is None else ("t", teacher_seed), []).append(v)
    return [sum(v) / len(v) for v in groups.values()]


def interval(b: dict) -> tuple[float, float, float]:
    """(mean, low, high) in percent over an entry's trajectory means (``cluster_means``)."""
    m, lo, hi = mean_interval(cluster_means(b) or [b["test_mean"]])
    return 100 * m, 100 * (m if math.isnan(lo) else lo), 100 * (m if math.isnan(hi) else hi)


def interval_n(b: dict) -> int:
    """How many values ``interval(b)`` averages (trajectories, or seeds for ``none``; 1: no interval)."""
    return len(cluster_means(b)) or 1


def footnote(fig, lines: list[str], fontsize: float = 7.5) -> None:
    """``lines`` under the figure, left-aligned, with room made for them in the constrained layout."""
    if not lines:
        return
    height = (len(lines) * 1.35 * fontsize + 6) / 72 / fig.get_figheight()
    fig.get_layout_engine().set(rect=(0, height, 1, 1 - height))
    fig.text(0.01, 0.004, "\n".join(lines), ha="left", va="bottom", fontsize=fontsize, color="0.25")


def _inside(box, ax_box, dy: float) -> float:
    """``dy`` corrected so that ``box`` moved by it stays within ``ax_box`` vertically."""
    if box.y1 + dy > ax_box.y1:
        dy = ax_box.y1 - box.y1
    if box.y0 + dy < ax_box.y0:
        dy = ax_box.y0 - box.y0
    return dy


def spread_labels(fig, labels: list, pad: float = 1.5, rounds: int = 300) -> None:
    """Move annotations (offsets in points) apart vertically until no two of one axes overlap,
    each kept inside its axes (one past the right edge goes to the left of its point); then fix
    the layout, so the saved figure is the one measured. Why: points at one cost, or with close
    values, put their labels on top of each other."""
    if not labels:
        return
    fig.draw_without_rendering()  # runs the layout engine: final axes positions
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    for t in labels:
        if t.get_window_extent(renderer).x1 > t.axes.get_window_extent(renderer).x1:
            t.set_horizontalalignment("right")
            t.xyann = (-abs(t.xyann[0]), t.xyann[1])
    to_points = 72.0 / fig.dpi
    for _ in range(rounds):
        boxes = [t.get_window_extent(renderer) for t in labels]
        moves = [0.0] * len(labels)
        for i, j in combinations(range(len(labels)), 2):
            a, b = boxes[i], boxes[j]
            if labels[i].axes is not labels[j].axes or a.x1 + pad <= b.x0 or b.x1 + pad <= a.x0:
                continue
            overlap = min(a.y1, b.y1) - max(a.y0, b.y0) + pad
            if overlap > 0:
                low, high = (i, j) if (a.y0 + a.y1, i) <= (b.y0 + b.y1, j) else (j, i)
                moves[low] -= overlap / 2
                moves[high] += overlap / 2
        moves = [_inside(box, t.axes.get_window_extent(renderer), m) for box, t, m in zip(boxes, labels, moves)]
        if max(abs(m) for m in moves) < 0.05:
            return
        for t, m in zip(labels, moves):
            t.xyann = (t.xyann[0], t.xyann[1] + m * to_points)
