"""Regret against compute (``selector_cost-<dataset>-<teacher>-<student>.png``): every selector's
mean regret (95% interval) against its cost per trajectory, in student-epochs (left) and seconds
(right), from the selector evaluation (``harness.report.selectors``): the proxy budgets joined by a
line, the paper's selector, the other estimators, the last checkpoint and the brute force (the
validation oracle: every checkpoint distilled fully). Labels are moved apart until none overlap
or leaves its panel (``figure.spread_labels``)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from harness.report.figure import figure, save, slug, spread_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COST_AXES = (("student_epochs", "student-epochs per trajectory", 1.0), ("cost_s", "seconds per trajectory", 0.1))


def _cost_style(selector: str) -> tuple[str, str]:
    """(colour, marker) of a row of the selector evaluation."""
    if selector.startswith("proxy"):
        return "C1", "o"
    if selector == "paper":
        return "C0", "s"
    if selector == "paper_recon":
        return "C4", "s"
    if selector == "oracle (val)":
        return "C2", "*"
    if selector == "last checkpoint (full)":
        return "0.2", "v"
    return "0.55", "D"


def _cost_panel(ax, rows: list[dict], field: str, label: str, linthresh: float) -> list:
    """Regret (mean, 95% CI) against one cost axis; proxy budgets joined in order of cost.
    Returns the point labels (annotations), to be spread apart once the figure is laid out."""
    placed = [r for r in rows if r.get(field) is not None]
    same_x: dict[float, list[dict]] = defaultdict(list)  # labels at one cost start in order of regret
    labels = []
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
        labels.append(
            ax.annotate(
                name, (r[field], m), xytext=(6, dy), textcoords="offset points", fontsize=7, color=colour, va="center"
            )
        )
    proxies = sorted((r for r in placed if r["selector"].startswith("proxy")), key=lambda r: r[field])
    if len(proxies) > 1:
        ax.plot([r[field] for r in proxies], [r["regret_pp"] for r in proxies], "-", color="C1", alpha=0.5)
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.axhline(0.0, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_xlabel(f"{label} (symlog)")
    ax.set_ylabel("regret vs validation oracle (pp, test)")
    ax.grid(alpha=0.3)
    return labels


def selector_cost_figures(selectors: dict) -> list[tuple[str, Figure]]:
    """(file name, figure) per (dataset, teacher, student) group of the selector evaluation."""
    out = []
    for key, g in (selectors.get("groups") or {}).items():
        fig, axes = figure(1, 2, size=(12.0, 4.6))
        labels = []
        for ax, (field, label, linthresh) in zip(axes[0], COST_AXES):
            labels += _cost_panel(ax, g["rows"], field, label, linthresh)
            ax.margins(y=0.12)  # room for labels spread above the highest point / below the lowest
        fig.suptitle(
            f"{key[0]}: {key[1]} -> {key[2]}: regret against compute per trajectory "
            f"({len(g['trajectories'])} trajectories; mean, 95% CI)",
            fontsize=9,
        )
        spread_labels(fig, labels)
        out.append((f"selector_cost-{slug(key[0])}-{slug(key[1])}-{slug(key[2])}.png", fig))
    return out


def plot_selector_cost(selectors: dict, out_dir: Path) -> list[Path]:
    """One figure per (dataset, teacher, student) group of the selector evaluation (module doc)."""
    return [save(fig, out_dir / name) for name, fig in selector_cost_figures(selectors)]
