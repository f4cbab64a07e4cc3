"""The information plane (the paper's Fig. 4/7): per-checkpoint (I(X;F), I(Y;F)) as table rows."""

from __future__ import annotations

from typing import Any

from harness.store import CheckpointStore

from .scores_file import CheckpointScores, checkpoints, read_scores, scored_trajectories
from .selection import SELECTORS


def information_plane(store: CheckpointStore, trajectory_name: str | None = None) -> list[dict]:
    """Per-checkpoint (I(X;F), I(Y;F)) pairs for the paper's Fig. 4/7, as table rows.

    One row per (trajectory, selector, checkpoint): ``trajectory, epoch, estimator`` (the selector
    name, i.e. the estimator pair), ``x_estimator, y_estimator``, ``i_x, i_y`` (nats: the
    estimators' ``plane_*_key`` values, e.g. recon's Gaussian-decoder bound and accuracy's Fano
    bound; None for a selector without that term), ``x_value, y_value`` (the raw selection
    terms, e.g. -BCE and accuracy), ``x_norm, y_norm, score`` and ``val_acc``; and the standard
    errors ``i_x_se, i_y_se, x_se, y_se`` (of the raw values) and ``score_se`` (bootstrap, of the
    normalized score), None where unknown. Plots should draw them as error bars.
    """
    if trajectory_name is not None:
        names = [trajectory_name]
    else:
        names = sorted(scored_trajectories(store))
    rows = []
    for name in names:
        scores = read_scores(store, name)
        for sel_name in scores["selectors"]:
            if SELECTORS[sel_name].kind != "mi":  # proxy selectors have no information-plane terms
                continue
            for c in checkpoints(scores):
                rows.append(_plane_row(scores, name, sel_name, c))
    return rows


def _plane_row(scores: dict, name: str, sel_name: str, c: CheckpointScores) -> dict[str, Any]:
    """One information-plane row (see ``information_plane``)."""
    sel = SELECTORS[sel_name]
    norm = c.normalized[sel_name]
    row: dict[str, Any] = {"trajectory": name, "epoch": c.epoch, "estimator": sel_name}
    for axis, term in (("x", sel.x), ("y", sel.y)):
        if term is None:
            row.update(
                {
                    f"{axis}_estimator": None,
                    f"i_{axis}": None,
                    f"{axis}_value": None,
                    f"{axis}_norm": None,
                    f"i_{axis}_se": None,
                    f"{axis}_se": None,
                }
            )
            continue
        est, key = term
        plane_key = scores["estimators"][est][f"plane_{axis}_key"]
        values = c.raw[est]
        row.update(
            {
                f"{axis}_estimator": est,
                f"i_{axis}": values.get(plane_key),
                f"{axis}_value": values.get(key),
                f"{axis}_norm": norm.get(axis),
                f"i_{axis}_se": values.get(f"{plane_key}_se"),
                f"{axis}_se": values.get(f"{key}_se"),
            }
        )
    row["score"] = norm["score"]
    row["score_se"] = norm.get("score_se")
    row["val_acc"] = c.val_acc
    return row
