"""What every report plot shares: a figure on matplotlib's Agg canvas (no pyplot; matplotlib is
imported only when plotting), an atomic PNG write, file-name slugs and an entry's 95% interval."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

from harness.report.stats import mean_interval


def figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.8), **kw):
    """A constrained-layout figure and its 2-d array of axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
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


def interval(b: dict) -> tuple[float, float, float]:
    """(mean, low, high) in percent of an entry's per-pair test accuracies."""
    m, lo, hi = mean_interval(list((b.get("pairs") or {}).values()) or [b["test_mean"]])
    return 100 * m, 100 * (m if math.isnan(lo) else lo), 100 * (m if math.isnan(hi) else hi)
