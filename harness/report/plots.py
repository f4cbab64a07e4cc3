"""Report plots (PNG, matplotlib's Agg canvas; matplotlib is imported only when plotting).

- ``acc_vs_teacher_epoch-<teacher>-<dataset>.png``: student test accuracy against the epoch of
  the single teacher checkpoint it learned from (every result row whose teacher choice resolved
  to one checkpoint: ``epoch:E``, ``full``, ``fraction:F``, ``selected:...``), hyperparameters
  chosen by validation per epoch as on the leaderboard, with the no-teacher baseline; below it
  the teacher's own curves from the trajectory manifests (validation accuracy per epoch, test
  accuracy at each saved checkpoint).
- ``information_plane.png``: I(X;F) against I(Y;F) for every scored checkpoint, coloured by
  epoch, one panel per estimator (from ``harness.scoring.information_plane``).
- ``ensemble_comparison.png``: student accuracy for no teacher, single checkpoints, snapshot
  ensembles and full ensembles, one panel per (dataset, teacher, student), with each teacher's
  own test accuracy written on its bar.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot), so plotting never
touches a global backend or opens a window. A plot whose data is missing is skipped with a
log line saying why.
"""
from __future__ import annotations

import io
import logging
import re
from collections import defaultdict
from pathlib import Path

from harness.report.leaderboard import ENSEMBLE_KINDS, build_leaderboard
from harness.config import ExperimentConfig

logger = logging.getLogger(__name__)


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.8), **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _save(fig, path: Path) -> Path:
    from harness.store import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def _kind(choice: str) -> str:
    return str(choice).split(":", 1)[0]


# ---------------------------------------------------------------------------------------------
# accuracy of the student vs the teacher checkpoint's epoch

def single_checkpoint_rows(rows: list[dict]) -> list[dict]:
    """Rows whose teacher resolved to exactly one checkpoint, relabelled ``epoch:E``.

    ``full`` and ``epoch:<last>`` (or ``fraction:0.5`` and ``epoch:<half>``) are the same run;
    such duplicates (same checkpoint, student, seed and hyperparameters) are counted once.
    """
    out, seen = [], set()
    for r in rows:
        ckpts = r.get("teacher_checkpoints") or []
        if _kind(r.get("teacher_choice", "")) != "none" and len(ckpts) == 1 and ckpts[0].get("epoch") is not None:
            key = (ckpts[0].get("trajectory"), int(ckpts[0]["epoch"]), r.get("student_arch"), r.get("seed"),
                   r.get("temperature"), r.get("kd_weight"), r.get("ensemble_reduce"))
            if key in seen:
                continue
            seen.add(key)
            out.append({**r, "teacher_choice": f"epoch:{int(ckpts[0]['epoch'])}", "teacher_epoch": int(ckpts[0]["epoch"])})
    return out


def _teacher_epoch_panels(rows: list[dict], singles: list[dict], reported: str) -> tuple[dict[tuple, dict], dict[tuple, dict[str, list[dict]]]]:
    """Plan: the no-teacher baselines by (dataset, student), and the ``epoch:E`` leaderboard
    entries by (dataset, teacher) then student, each list sorted by teacher epoch."""
    board = build_leaderboard(singles + [r for r in rows if _kind(r.get("teacher_choice", "")) == "none"], reported=reported)
    baselines = {(b["dataset"], b["student_arch"]): b for b in board if _kind(b["teacher_choice"]) == "none"}
    pairs: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for b in board:
        if _kind(b["teacher_choice"]) == "epoch":
            pairs[(b["dataset"], b["teacher_arch"])][b["student_arch"]].append(b)
    for students in pairs.values():
        for entries in students.values():
            entries.sort(key=_teacher_epoch)
    return baselines, pairs


def _teacher_epoch(b: dict) -> int:
    """E of a leaderboard entry whose teacher choice is ``epoch:E``."""
    return int(b["teacher_choice"].split(":")[1])


def _draw_students(ax, dataset: str, t_arch: str, students: dict[str, list[dict]], baselines: dict[tuple, dict], reported: str) -> None:
    """Upper panel: student test accuracy (mean ± std) per teacher epoch, baselines dashed."""
    for i, (s_arch, entries) in enumerate(sorted(students.items())):
        xs = [_teacher_epoch(b) for b in entries]
        ys = [100 * b["test_mean"] for b in entries]
        es = [100 * (b["test_std"] or 0.0) for b in entries]
        color = f"C{i}"
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=color, label=f"{s_arch} <- {t_arch}")
        base = baselines.get((dataset, s_arch))
        if base is not None:
            ax.axhline(100 * base["test_mean"], color=color, linestyle="--", linewidth=1, label=f"{s_arch}, no teacher")
    ax.set_ylabel("student test acc (%)")
    ax.set_title(f"{dataset}: student accuracy vs teacher checkpoint ({reported} epoch, mean ± std over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _draw_teachers(tax, curves: list[dict]) -> None:
    """Lower panel: each teacher trajectory's validation curve and checkpoint test accuracies."""
    for j, m in enumerate(sorted(curves, key=lambda m: str(m.get("name")))):
        hist = [h for h in m.get("history", []) if h.get("val_acc") is not None]
        color = f"C{j}"
        if hist:
            tax.plot([h["epoch"] for h in hist], [100 * h["val_acc"] for h in hist], color=color, linewidth=1, alpha=0.8, label=f"{m.get('name')} val")
        ck = [c for c in m.get("checkpoints", []) if c.get("test_acc") is not None]
        if ck:
            tax.plot([c["epoch"] for c in ck], [100 * c["test_acc"] for c in ck], "s", color=color, markersize=4, label=f"{m.get('name')} test (ckpt)")
    if not curves:
        tax.text(0.5, 0.5, "no teacher manifests in the store", ha="center", va="center", transform=tax.transAxes)
    else:
        tax.legend(fontsize=7, ncol=2)
    tax.set_xlabel("teacher epoch")
    tax.set_ylabel("teacher acc (%)")
    tax.grid(alpha=0.3)


def plot_accuracy_vs_teacher_epoch(rows: list[dict], manifests: list[dict], out_dir: Path, reported: str = "final") -> list[Path]:
    """One figure per (dataset, teacher): student accuracy against the teacher checkpoint's
    epoch above, the teacher's own curves below; [] (logged) without single-checkpoint rows."""
    singles = single_checkpoint_rows(rows)
    if not singles:
        logger.info("[plot] accuracy vs teacher epoch: skipped (no student results from single teacher checkpoints; sweep `epoch:E` or `every_checkpoint`)")
        return []
    baselines, pairs = _teacher_epoch_panels(rows, singles, reported)
    paths = []
    for (dataset, t_arch), students in sorted(pairs.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        fig, axes = _figure(2, 1, size=(7.0, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        _draw_students(axes[0, 0], dataset, t_arch, students, baselines, reported)
        _draw_teachers(axes[1, 0], [m for m in manifests if m.get("arch") == t_arch and m.get("dataset") == dataset])
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


def plot_information_plane(rows: list[dict], out_dir: Path) -> Path:
    by_est: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_est[str(r["estimator"])].append(r)
    ests = sorted(by_est)
    ncols = min(3, len(ests))
    nrows = (len(ests) + ncols - 1) // ncols
    fig, axes = _figure(nrows, ncols, size=(max(6.0, 4.8 * ncols), 4.2 * nrows))
    epochs = [float(r["epoch"]) for r in rows]
    lo, hi = min(epochs), max(epochs)
    for k, est in enumerate(ests):
        ax = axes[k // ncols, k % ncols]
        trajs: dict[str, list[dict]] = defaultdict(list)
        for r in by_est[est]:
            trajs[str(r["trajectory"])].append(r)
        for pts in trajs.values():
            pts.sort(key=lambda r: r["epoch"])
            ax.plot([p["i_x"] for p in pts], [p["i_y"] for p in pts], color="0.7", linewidth=0.8, zorder=1)
        sc = ax.scatter([r["i_x"] for r in by_est[est]], [r["i_y"] for r in by_est[est]],
                        c=[r["epoch"] for r in by_est[est]], cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1, s=28, zorder=2)
        first = by_est[est][0]
        via = [f"{a}: {first[k]}" for a, k in (("X", "x_estimator"), ("Y", "y_estimator")) if first.get(k) and first.get(k) != est]
        ax.set_title(est + (f" ({', '.join(via)})" if via else ""), fontsize=9)
        ax.set_xlabel("I(X;F) (nats)")
        ax.set_ylabel("I(Y;F) (nats)")
        ax.grid(alpha=0.3)
        fig.colorbar(sc, ax=ax, label="epoch")
    for k in range(len(ests), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    fig.suptitle("Information plane of the teacher checkpoints\n(colour: epoch; grey lines join one trajectory)", fontsize=9)
    return _save(fig, out_dir / "information_plane.png")


# ---------------------------------------------------------------------------------------------
# ensemble comparison

CATEGORIES = [  # (label, colour, predicate on the choice kind)
    ("no teacher", "0.6", lambda k: k == "none"),
    ("single checkpoint", "C0", lambda k: k in ("full", "fraction", "selected")),  # epoch:E left out (many)
    ("snapshot ensemble", "C2", lambda k: k in ("snapshot", "selected_ensemble")),
    ("full ensemble", "C3", lambda k: k == "full_ensemble"),
]


def _category(choice: str) -> int | None:
    k = _kind(choice)
    for i, (_, _, pred) in enumerate(CATEGORIES):
        if pred(k):
            return i
    return None


def plot_ensemble_comparison(board: list[dict], out_dir: Path) -> Path | None:
    """Bars of mean ± std student test accuracy per teacher choice (``epoch:E`` rows left out
    to keep it readable); None when the board has no ensemble choice."""
    if not any(_kind(b["teacher_choice"]) in ENSEMBLE_KINDS for b in board):
        return None
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for b in board:
        if b["teacher_arch"] is not None and _category(b["teacher_choice"]) is not None:
            panels[(b["dataset"], b["teacher_arch"], b["student_arch"])].append(b)
    panels = {k: v for k, v in panels.items() if any(_kind(b["teacher_choice"]) in ENSEMBLE_KINDS for b in v)}
    for (dataset, _, s_arch), entries in panels.items():
        entries += [b for b in board if _kind(b["teacher_choice"]) == "none" and b["dataset"] == dataset and b["student_arch"] == s_arch]
    keys = sorted(panels, key=lambda k: tuple(map(str, k)))
    fig, axes = _figure(len(keys), 1, size=(max(6.0, 1.1 * max(len(v) for v in panels.values()) + 2), 3.6 * len(keys)))
    for ax, key in zip(axes[:, 0], keys):
        entries = sorted(panels[key], key=lambda b: (_category(b["teacher_choice"]), -b["test_mean"]))
        xs = list(range(len(entries)))
        ys = [100 * b["test_mean"] for b in entries]
        es = [100 * (b["test_std"] or 0.0) for b in entries]
        colors = [CATEGORIES[_category(b["teacher_choice"])][1] for b in entries]
        ax.bar(xs, ys, yerr=es, color=colors, capsize=3)
        for x, y, e, b in zip(xs, ys, es, entries):
            label = f"n={b['n']}" + ("" if b["teacher_test_acc"] is None else f"\nteacher {100 * b['teacher_test_acc']:.1f}%")
            ax.text(x, y + e, label, ha="center", va="bottom", fontsize=7)
        lo = min(y - e for y, e in zip(ys, es))
        hi = max(y + e for y, e in zip(ys, es))
        pad = max(1.0, 0.25 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + 2.5 * pad))
        ax.set_xticks(xs, [b["teacher_choice"] for b in entries], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("student test acc (%)")
        ax.set_title(f"{key[0]}: {key[1]} -> {key[2]}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=c, label=l) for l, c, _ in CATEGORIES], loc="outside lower center", ncol=len(CATEGORIES), fontsize=8)
    return _save(fig, out_dir / "ensemble_comparison.png")


# ---------------------------------------------------------------------------------------------

def make_plots(cfg: ExperimentConfig, reported: str = "final") -> list[Path]:
    """Write every plot whose data exists under ``<storage>/<name>/plots/``; return the paths."""
    from harness.store import CheckpointStore

    store = CheckpointStore(cfg.storage, cfg.name)
    out_dir = store.root / "plots"
    rows = store.read_results()
    manifests = [t.manifest() for t in store.trajectories()]
    paths: list[Path] = []

    paths += plot_accuracy_vs_teacher_epoch(rows, manifests, out_dir, reported=reported)

    plane, why = information_plane_rows(store)
    if plane:
        paths.append(plot_information_plane(plane, out_dir))
    else:
        logger.info("[plot] information plane: skipped (%s)", why)

    board = build_leaderboard(rows, reported=reported)
    p = plot_ensemble_comparison(board, out_dir) if board else None
    if p is not None:
        paths.append(p)
    else:
        why = "no student results" if not board else "no snapshot or ensemble teacher choices in the results"
        logger.info("[plot] ensemble comparison: skipped (%s)", why)

    for p in paths:
        logger.info("[plot] wrote %s", p)
    return paths
