"""Is a trajectory's scores file up to date? Answered without loading any model.

``scores_fresh(cfg, name)`` lets the pipeline, the dry run and the cluster skip trajectories
whose scores already match the config; ``score_trajectory`` still decides exactly, per
(checkpoint, estimator), what to reuse (``plan.py``).
"""

from __future__ import annotations

from typing import Any

from harness.config import ExperimentConfig
from harness.store import Trajectory

from .base import build_estimator
from .scores_file import checkpoint_shas, checkpoints, picks, read_scores
from .teacher_picks import pick_problem


def scores_fresh(cfg: ExperimentConfig, name: str) -> bool:
    """True when ``scores/<name>.json`` already matches the trajectory's checkpoints and the
    config's estimators, scoring sample and selection settings, so it need not be scored again.
    Any doubt (missing file or keys, other schema, no or a wrong digest, a pick that does not follow
    from the recorded values) answers False; ``score_trajectory`` then
    decides exactly, per (checkpoint, estimator)."""
    try:
        from harness.experiment import open_store

        from .proxy import proxy_fresh

        store = open_store(cfg)
        scores = read_scores(store, name)
        traj = store.trajectory(name)
        return (
            pick_problem(scores) is None
            and _checkpoints_match(traj, scores)
            and _estimators_match(cfg.scoring, scores)
            and not any(found != expected for found, expected in _expected_settings(cfg, scores).values())
            and _ensemble_selector_matches(cfg.scoring, scores)
            and proxy_fresh(cfg, scores)
        )
    except Exception:
        return False


def _checkpoints_match(traj: Trajectory, scores: dict) -> bool:
    """The trajectory is finished and the file scores exactly its checkpoints (epochs and sha256)."""
    on_disk = {c["epoch"]: c.get("sha256") for c in traj.checkpoints()}
    return traj.is_finished() and on_disk == checkpoint_shas(scores)


def _estimators_match(sc, scores: dict) -> bool:
    """Every configured estimator is in the file, with the configured parameters, for every checkpoint."""
    for est in sc.estimators:
        if scores["estimators"][est]["params"] != build_estimator(est, sc).params():
            return False
        if any(est not in c.raw for c in checkpoints(scores)):
            return False
    return True


def _expected_settings(cfg: ExperimentConfig, scores: dict) -> dict[str, tuple[Any, Any]]:
    """The scoring sample and selection settings of a scores file: ``{setting: (found, expected)}``,
    expected from ``cfg`` (the ensemble sizes: those that fit the file's checkpoints)."""
    sc, info = cfg.scoring, scores["data"]
    weights = scores.get("weights", {})
    ens = scores.get("selected_ensemble", {})
    n = len(scores["checkpoints"])
    return {
        "dataset": (info.get("dataset"), cfg.data.name),
        "seed": (info.get("seed"), sc.seed),
        "data_seed": (info.get("data_seed"), cfg.data.seed),
        "val_fraction": (info.get("val_fraction"), cfg.data.val_fraction),
        "data_num_samples": (info.get("data_num_samples"), cfg.data.num_samples),
        "num_samples": (info.get("num_samples"), min(sc.num_samples, int(info.get("val_size", -1)))),
        "folds": (info.get("folds"), sc.folds),
        "bootstrap": (scores.get("replicates", {}).get("bootstrap"), sc.bootstrap),
        "degenerate_fallback": (
            scores.get("replicates", {}).get("degenerate_fallback", "missing"),
            sc.degenerate_fallback,
        ),
        "normalization": (scores.get("normalization"), sc.normalization),
        "weights": ((weights.get("x"), weights.get("y")), (sc.x_weight, sc.y_weight)),
        "min_gap_fraction": (ens.get("min_gap_fraction"), sc.min_gap_fraction),
        "ensemble_sizes": (
            sorted(int(k) for k in ens.get("by_k", {})),
            sorted({int(k) for k in sc.ensemble_sizes if int(k) <= n}),
        ),
    }


def _ensemble_selector_matches(sc, scores: dict) -> bool:
    """The configured ensemble selector ranks the members whenever it could be computed."""
    return sc.ensemble_selector not in picks(scores) or (
        scores.get("selected_ensemble", {}).get("selector") == sc.ensemble_selector
    )
