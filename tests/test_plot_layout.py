"""Plot layout, measured on the Agg renderer: no two labels overlap and every label lies inside the
figure (annotations inside their axes); degenerate selectors are a footnote on the information
plane, not a panel or a pick; the accuracy-vs-epoch plot shows n where it varies."""

from __future__ import annotations

from itertools import combinations

import pytest
from matplotlib.text import Annotation, Text

from harness.report import selector_plot
from harness.report.epoch_plot import epoch_figures
from harness.report.plane_plot import information_plane_figure, plot_information_plane
from harness.report.selector_plot import selector_cost_figures
from tests.synthetic_results import ARCH, DATA, STUDENT, result_row, traj

EPOCHS = (5, 10, 15, 20)


def _drawn_tick_labels(fig) -> set[int]:
    """ids of the tick labels matplotlib draws (a tick outside the view limits keeps a stale label)."""
    out = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            locs = axis.get_majorticklocs()
            span = (hi - lo) * 1e-9
            for tick, loc in zip(axis.get_major_ticks(len(locs)), locs):
                if lo - span <= loc <= hi + span:
                    out |= {id(tick.label1), id(tick.label2)}
    return out


def texts(fig) -> list[Text]:
    """Every visible, non-empty text of a drawn figure (titles, labels, drawn tick labels, legends,
    annotations, notes)."""
    fig.canvas.draw()
    drawn = _drawn_tick_labels(fig)
    ticks = {
        id(t)
        for ax in fig.axes
        for axis in (ax.xaxis, ax.yaxis)
        for tk in axis.get_major_ticks() + axis.get_minor_ticks()
        for t in (tk.label1, tk.label2)
    }
    return [
        t
        for t in fig.findobj(Text)
        if t.get_visible()
        and t.get_text().strip()
        and (t.axes is None or t.axes.get_visible())
        and (id(t) not in ticks or id(t) in drawn)
    ]


def overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes overlap (touching edges allowed)."""
    r = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in texts(fig)]
    return [
        (a, b)
        for (a, x), (b, y) in combinations(boxes, 2)
        if x.x0 < y.x1 - 0.5 and y.x0 < x.x1 - 0.5 and x.y0 < y.y1 - 0.5 and y.y0 < x.y1 - 0.5
    ]


def assert_clean_layout(fig) -> None:
    """No overlapping texts; all inside the figure; annotations inside their axes."""
    assert overlaps(fig) == []
    r, page = fig.canvas.get_renderer(), fig.bbox
    for t in texts(fig):
        box = t.get_window_extent(r)
        assert page.x0 - 0.5 <= box.x0 and box.x1 <= page.x1 + 0.5, t.get_text()
        assert page.y0 - 0.5 <= box.y0 and box.y1 <= page.y1 + 0.5, t.get_text()
        if isinstance(t, Annotation):
            ax = t.axes.get_window_extent(r)
            assert ax.x0 <= box.x0 and box.x1 <= ax.x1 and ax.y0 <= box.y0 and box.y1 <= ax.y1, t.get_text()


# ----------------------------------------------------------------------------- information plane


def plane_rows() -> list[dict]:
    """Two trajectories; paper and kde move on the plane, binning is saturated on I(X;F), flat ties
    every checkpoint in every trajectory and kde in one of them."""
    rows = []
    for t in (0, 1):
        for e in EPOCHS:
            for est, ix, iy in (("binning", 4.6, 0.5 + e / 40), ("paper", e / 10, 1 + e / 30), ("kde", e / 8, e / 25)):
                rows.append({"trajectory": traj(t), "epoch": e, "estimator": est, "i_x": ix, "i_y": iy})
            rows.append({"trajectory": traj(t), "epoch": e, "estimator": "flat", "i_x": e / 9, "i_y": 1 + e / 50})
    return rows


def plane_scores() -> dict[str, dict]:
    return {
        traj(t): {
            "selected": {
                "paper": {"epoch": 15},
                "kde": {"epoch": 20, "degenerate": t == 1, "fallback": "paper" if t == 1 else None},
                "binning": {"epoch": 5, "degenerate": True},
                "flat": {"epoch": 5, "degenerate": True},
            }
        }
        for t in (0, 1)
    }


def test_information_plane_puts_degenerate_selectors_in_a_footnote(tmp_path):
    fig = information_plane_figure(plane_rows(), plane_scores())
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["paper", "kde"]  # real selectors only, the paper's first
    note = next(t.get_text() for t in fig.texts if "not drawn" in t.get_text())
    assert "binning: constant on every checkpoint (I(X;F) = 4.6: saturated); not drawn" in note
    assert "flat: every checkpoint scores the same (degenerate in 2 of 2 trajectories); not drawn" in note
    assert f"kde: degenerate in {traj(1)}; no pick drawn there" in note
    stars = {
        ax.get_title(): sum(
            len(c.get_offsets())
            for c in ax.collections
            if c.get_edgecolor().size and (tuple(c.get_edgecolor()[0][:3]) == (1.0, 0.0, 0.0))
        )
        for ax in panels
    }
    assert stars == {"paper": 2, "kde": 1}  # no star for kde's degenerate (fallback) pick
    assert_clean_layout(fig)
    assert plot_information_plane(plane_rows(), tmp_path, plane_scores()).read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- accuracy vs epoch


def test_accuracy_vs_epoch_shows_n_where_it_varies():
    """Epochs 5 and 10 have 2 trajectories (a student each), 15 and 20 one: those two are labelled
    n=1, drawn hollow; n counts trajectories, the unit of replication."""
    rows = [
        result_row(f"epoch:{e}", s, s, [(traj(s), e)], 0.7 + e / 1000 + s / 200)
        for e in EPOCHS
        for s in range(2 if e <= 10 else 1)
    ]
    rows += [result_row("none", s, None, [], 0.68 + s / 100) for s in range(2)]
    scores = {
        traj(0): {
            "dataset": DATA,
            "arch": ARCH,
            "selected": {"paper": {"epoch": 10}, "binning": {"epoch": 5, "degenerate": True}},
        }
    }
    ((name, fig),) = epoch_figures(rows, [], "final", scores)
    assert name == f"acc_vs_teacher_epoch-{ARCH}-{DATA}.png"
    top, picks = fig.axes[0], fig.axes[1]
    labels = [(t.get_text(), t.xy[0]) for t in top.texts if isinstance(t, Annotation)]
    assert sorted(labels) == [("n=1", 15), ("n=1", 20)]
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert any(
        "n = 2 teacher trajectories per point unless labelled n=K; n=1 (hollow): no interval" in t for t in legend
    )
    assert [t.get_text() for t in picks.get_yticklabels()] == ["paper"]  # binning's tie is no pick
    assert "degenerate" in picks.get_title(loc="left") and "binning" in picks.get_title(loc="left")
    assert_clean_layout(fig)
    # the same points with n = 2 everywhere: no labels, the legend names n once
    even = rows + [result_row(f"epoch:{e}", 1, 1, [(traj(1), e)], 0.7 + e / 1000) for e in (15, 20)]
    ((_, fig),) = epoch_figures(even, [], "final", scores)
    assert not [t for t in fig.axes[0].texts if isinstance(t, Annotation)]
    assert any(t.get_text() == "n = 2 teacher trajectories per point" for t in fig.axes[0].get_legend().get_texts())


# ----------------------------------------------------------------------------- selector cost


def cost_row(selector: str, regret: float, epochs: float, seconds: float) -> dict:
    return {
        "selector": selector,
        "regret_pp": regret,
        "regret_ci_low": regret - 0.4,
        "regret_ci_high": regret + 0.4,
        "student_epochs": epochs,
        "cost_s": seconds,
    }


def cost_selectors() -> dict:
    """Five selectors at cost 0 student-epochs with regrets within 0.1 pp, proxies, the brute force
    at the far right (its label would leave the axes)."""
    rows = [cost_row(s, 1.0 + 0.02 * i, 0.0, 0.5 + 0.01 * i) for i, s in enumerate(("paper", "kde", "binning", "knn"))]
    rows += [
        cost_row("last checkpoint (full)", 1.03, 0.0, 0.0),
        cost_row("proxy@1", 0.8, 8.0, 2.0),
        cost_row("proxy@2", 0.78, 16.0, 4.0),
        cost_row("oracle (val)", 0.0, 600.0, 50.0),
    ]
    return {"groups": {(DATA, ARCH, STUDENT): {"rows": rows, "trajectories": [traj(0), traj(1)]}}}


def test_selector_cost_labels_do_not_overlap(monkeypatch):
    ((name, fig),) = selector_cost_figures(cost_selectors())
    assert name == f"selector_cost-{DATA}-{ARCH}-{STUDENT}.png"
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert len(labels) == 8 and "brute force (oracle)" in labels
    assert_clean_layout(fig)
    # the data reproduces the problem: without spreading, labels collide at x = 0
    monkeypatch.setattr(selector_plot, "spread_labels", lambda fig, labels: None)
    ((_, raw),) = selector_cost_figures(cost_selectors())
    assert overlaps(raw)


@pytest.mark.parametrize("n", [1, 12])
def test_spread_labels_keeps_many_labels_inside_the_axes(n):
    """Many selectors at one point: still no overlap, all inside (and one alone is left in place)."""
    rows = [cost_row(f"selector-{i}", 1.0, 0.0, 0.0) for i in range(n)] + [cost_row("oracle (val)", 0.0, 300, 30)]
    ((_, fig),) = selector_cost_figures({"groups": {(DATA, ARCH, STUDENT): {"rows": rows, "trajectories": []}}})
    assert_clean_layout(fig)
