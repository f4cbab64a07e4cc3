"""What a scoring run computes: which (checkpoint, estimator) results it can reuse.

Re-running reuses every (checkpoint, estimator) result of the previous scores file whose
checkpoint sha256 and settings hash (estimator hyperparameters + scoring sample: data set,
split, size, seed, folds; the training rows too for an estimator that trains on them, ``recon``)
are unchanged; the rest is the run's to-do list (``ScoringPlan.todo``). A reused result keeps the
cost it was computed at (``cost_s``), and an unchanged checkpoint the cost of the feature pass that
first scored it, so a selector's cost does not shrink when a later run re-scores something else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from harness.config import ExperimentConfig, config_hash
from harness.store import CheckpointStore, Trajectory

from .base import Estimator, ScoringData, ScoringError, build_estimator
from .sample import build_scoring_data
from .scores_file import CheckpointScores, ScoresError, checkpoints, has_scores, read_scores

logger = logging.getLogger(__name__)

TRAIN_INFO_KEYS = ("train_split", "train_size", "train_rows")


def settings_hash(estimator: Estimator, data: ScoringData) -> str:
    """Cache key of an estimator's results: its hyperparameters + the scoring sample's identity
    (and the training rows' only for an estimator that trains on them)."""
    info = data.info if estimator.needs_train_rows else {k: v for k, v in data.info.items() if k not in TRAIN_INFO_KEYS}
    return config_hash({"estimator": estimator.name, "params": estimator.params(), "data": info})


def configured_estimators(cfg: ExperimentConfig) -> dict[str, Estimator]:
    """The configured estimators by name, in ``scoring.estimators`` order."""
    names = list(cfg.scoring.estimators)
    if not names:
        raise ScoringError("scoring.estimators is empty; name at least one of the registered estimators")
    return {name: build_estimator(name, cfg.scoring) for name in names}


def _load_previous(store: CheckpointStore, name: str) -> dict[int, CheckpointScores]:
    """The checkpoints of the trajectory's previous scores file by epoch ({} when there is none)."""
    if not has_scores(store, name):
        return {}
    try:
        return {c.epoch: c for c in checkpoints(read_scores(store, name))}
    except (ScoresError, KeyError, TypeError, AttributeError) as e:
        logger.info(f"[score] {name}: ignoring the previous scores file ({e})")
        return {}


@dataclass
class ScoringPlan:
    """What one ``score_trajectory`` call computes.

    ``raw`` starts with the reused results (checkpoint and settings hash unchanged) and is
    completed by the run; ``todo`` lists, per estimator, the epochs it must (re)score; ``costs``
    starts with the reused results' stored costs (and an unchanged checkpoint's ``features``).
    """

    traj: Trajectory
    manifest: dict
    epochs: list[int]
    estimators: dict[str, Estimator]
    hashes: dict[str, str]
    data: ScoringData
    raw: dict[int, dict[str, dict[str, float]]]
    todo: dict[str, list[int]]
    reps: dict[int, dict[str, dict[str, list[list[float]]]]]  # epoch -> estimator -> key -> [S][F]
    costs: dict[int, dict[str, float]]  # epoch -> {"features" | estimator: seconds} (scores_file.py)

    @property
    def need(self) -> list[int]:
        """Every epoch that at least one estimator must score, ascending."""
        return sorted({e for es in self.todo.values() for e in es})


def plan_scoring(
    cfg: ExperimentConfig, store: CheckpointStore, trajectory: Trajectory | str, data: ScoringData | None
) -> ScoringPlan:
    """Plan a run: which (checkpoint, estimator) results the previous scores file still holds."""
    traj = store.trajectory(trajectory) if isinstance(trajectory, str) else trajectory
    manifest = traj.manifest()
    epochs = traj.finished_epochs()
    entries = {c["epoch"]: c for c in manifest["checkpoints"]}
    estimators = configured_estimators(cfg)
    data = data if data is not None else build_scoring_data(cfg)
    hashes = {name: settings_hash(est, data) for name, est in estimators.items()}
    previous = _load_previous(store, traj.name)

    raw: dict[int, dict[str, dict[str, float]]] = {e: {} for e in epochs}
    reps: dict[int, dict[str, dict[str, list[list[float]]]]] = {e: {} for e in epochs}
    costs: dict[int, dict[str, float]] = {e: {} for e in epochs}
    todo: dict[str, list[int]] = {name: [] for name in estimators}
    for e in epochs:
        old = previous.get(e)
        same_ckpt = old is not None and old.sha256 == entries[e]["sha256"]
        if same_ckpt and "features" in old.cost_s:  # the pass that first scored this checkpoint
            costs[e]["features"] = old.cost_s["features"]
        for name in estimators:
            if same_ckpt and old.hashes.get(name) == hashes[name] and name in old.raw:
                raw[e][name] = old.raw[name]
                reps[e][name] = old.replicates.get(name, {})
                if name in old.cost_s:  # a file written before costs were recorded has none
                    costs[e][name] = old.cost_s[name]
            else:
                todo[name].append(e)
    return ScoringPlan(traj, manifest, epochs, estimators, hashes, data, raw, todo, reps, costs)
