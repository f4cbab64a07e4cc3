"""The scores file: ``<storage>/<experiment>/scores/<trajectory>.json``, its one owner.

The scorer (``runner.score_trajectory``) writes one per trajectory; the teacher choices
``selected:<selector>`` / ``selected_ensemble:K`` (``selection.read_selected*``), the freshness
check, the information plane, the report, tracking and the cluster read it. This module owns the
path, the schema version, reading (checked), writing (atomic), listing and reading them all, and
typed accessors for what readers take from it, so no reader indexes the JSON on its own.

Scores file (``schema_version`` 2)::

    trajectory, arch, dataset, seed, epochs          from the manifest
    data          {dataset, split: "val", val_size, num_samples, seed, folds,
                   train_split, train_size, train_rows, ...}        the scoring sample
    estimators    {name: {params, hash, x_key, y_key, plane_x_key, plane_y_key, description}}
    selectors     {name: {x: "est.key", y: "est.key", estimators, description}}   computed ones
    normalization "minmax";  weights {x, y}
    replicates    {folds, bootstrap, degenerate_fallback, seeds: {estimator: S}}
    checkpoints   [{epoch, sha256, val_acc,
                    raw: {estimator: {key: value, key_se: standard error}},
                         e.g. recon: {loss, loss_se, neg_loss, mse, i_x, i_x_se, best_epoch,
                                      epochs_trained, epochs_trained_max, converged, seeds}
                    replicates: {estimator: {key: [[S x F replicate values]]}},
                    hashes: {estimator: settings hash},
                    cost_s: {features: s, estimator: s},   what this checkpoint's estimates cost
                    normalized: {selector: {x, y, score, x_se, y_se, score_se}}}]
                    (a proxy selector's: {score = rung reached + val acc there, rung, val_acc})
    selected      {selector: {epoch, score, degenerate, fallback, confidence, unstable}}   T*
    proxy         {selector: {settings, hash, candidates, rungs, pick, confidence, cost}}  (proxy.py)
    selection_confidence {selector: {"epoch": P(that checkpoint is T*)}}
    selected_ensemble {selector, min_gap_fraction, min_gap_epochs,
                       by_k: {"K": {epochs: [...], gap_epochs, score_sum}}}
    timings       {total_s, load_s, features_s, estimators_s: {name: s}, per_checkpoint_s,
                   checkpoints_scored, checkpoints_reused, estimator_checkpoints_scored: {name: n},
                   shared_pass, device, num_threads, proxy_s}   (of the latest run; costs: below)
    environment   the scorer's fingerprint (``harness/fingerprint.py``: harness, torch, device,
                  CPU ISA, threads, precision, determinism flags) of the latest run; reused
                  results may come from an earlier one. Not part of freshness (like ``timings``)
    written_at    ISO time
    digest        sha256 of the file's canonical JSON without this field (``scores_digest``)

**Costs.** ``checkpoints[].cost_s`` is stored with the estimates and travels with them: an
estimator's entry is its time on the group of checkpoints it scored, divided evenly among them;
``features`` is the load and feature-pass time of the run that first scored the checkpoint (group
time / group size). A re-score that reuses an estimate carries its cost forward (``plan.py``), so
a selector's cost (``report/selectors.selector_cost_s``: the sum over checkpoints of ``features``
and its estimators' costs) is what its estimates cost, whatever was re-scored later; ``timings``
stays the latest run's. Files written before ``cost_s`` (same schema: the field is optional and
its readers lenient, so no schema bump invalidates them) read as having no costs, and the report
falls back to their latest run's timings and says so.

**Trust.** The file records the sha256 of its inputs (every checkpoint's) and of itself
(``digest``). ``read_scores`` refuses, with one line naming the file and saying to re-run
``ckd score``, a file that is not a regular UTF-8 JSON object of bounded size, of another schema,
without a digest (written before digests, or edited) or whose digest does not match (edited
after it was written); the picks are then checked against the recorded values
(``teacher_picks.pick_problem``). A file edited together with a recomputed digest is caught only where
the edit contradicts the recorded values; values forged consistently are not detected.

Readers of many files (the report, plots) take them as they are (``read_all_scores``: a file
that does not parse is left out), so the accessors are lenient: a missing or malformed part
reads as empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.fileio import JSON_MAX_BYTES, StoredFileError, atomic_write_json, read_json_object
from harness.store import StoreError

logger = logging.getLogger(__name__)

SCORES_SCHEMA_VERSION = 2  # 2: error bars, replicates, selection_confidence, recon on training rows
DIGEST_KEY = "digest"  # sha256 of the file without this field


class ScoresError(StoreError, ValueError):
    """Scores are missing, stale or lack the requested selector; the message says what to run."""


# ----------------------------------------------------------------------------- files


def scores_path(store: Any, trajectory_name: str) -> Path:
    """Where the scores file of one trajectory lives."""
    return store.scores_dir / f"{trajectory_name}.json"


def has_scores(store: Any, trajectory_name: str) -> bool:
    """Whether the trajectory has a scores file (readable or not)."""
    return scores_path(store, trajectory_name).is_file()


def scored_trajectories(store: Any) -> list[str]:
    """The trajectories with a scores file, in file-name order ([] without a scores folder)."""
    folder = store.scores_dir
    return [path.stem for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def read_scores(store: Any, trajectory_name: str) -> dict:
    """The scores file of one trajectory; ``ScoresError`` if scoring has not run (or the file is
    corrupt or of another schema)."""
    path = scores_path(store, trajectory_name)
    if not path.is_file():
        raise ScoresError(
            f"no MI scores for trajectory {trajectory_name}: {path} does not exist; run `ckd score CONFIG` first"
        )
    try:  # a regular UTF-8 JSON object of bounded size only (no symlink, FIFO, device)
        scores = read_json_object(path, JSON_MAX_BYTES, "scores file", "delete it and run `ckd score CONFIG` first")
    except StoredFileError as e:
        raise ScoresError(str(e)) from None
    if scores.get("schema_version") != SCORES_SCHEMA_VERSION:
        raise ScoresError(
            f"scores file {path} has schema {scores.get('schema_version')}, expected {SCORES_SCHEMA_VERSION}; "
            "run `ckd score CONFIG` first"
        )
    if DIGEST_KEY not in scores:
        raise ScoresError(
            f"scores file {path} records no digest (written before digests, or edited), so it is not trusted; "
            "re-run `ckd score CONFIG` to rescore it"
        )
    if scores[DIGEST_KEY] != scores_digest(scores):
        raise ScoresError(
            f"scores file {path} does not match its digest (changed after it was written), so it is not trusted; "
            "re-run `ckd score CONFIG` to rescore it"
        )
    return scores


def scores_digest(scores: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of ``scores`` without its digest."""
    body = {k: v for k, v in scores.items() if k != DIGEST_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def write_scores(store: Any, trajectory_name: str, scores: dict) -> Path:
    """Write (atomically: temp file + rename) the scores file of one trajectory, sealed with its
    digest (also set in ``scores``: over the values as JSON reads them back); returns its path."""
    path = scores_path(store, trajectory_name)
    body = json.loads(json.dumps({k: v for k, v in scores.items() if k != DIGEST_KEY}, default=str))
    scores[DIGEST_KEY] = body[DIGEST_KEY] = scores_digest(body)
    atomic_write_json(path, body)
    return path


def read_all_scores(store: Any) -> dict[str, dict]:
    """``{trajectory: scores}`` for every scores file that passes ``read_scores``'s checks (a
    regular JSON object of this schema that matches its digest; {} without any): the report
    evaluates those and leaves out, with one log line each, what it cannot trust."""
    out: dict[str, dict] = {}
    for name in scored_trajectories(store):
        try:
            out[name] = read_scores(store, name)
        except (OSError, ValueError, ScoresError) as e:  # half-written, refused or unsealed: evaluate the rest
            logger.warning("[report] scores of %s left out: %s", name, e)
    return out


# ----------------------------------------------------------------------------- accessors


def _part(obj: Any, key: str) -> dict:
    """``obj[key]`` when both are mappings, else {} (lenient reading)."""
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Pick:
    """One selector's T* (``selected[selector]``): the epoch (None if the file has none), its
    score, whether every checkpoint tied (``degenerate``), the selector whose pick it took then
    (``fallback``), its bootstrap ``confidence`` and whether that is below 0.5 (``unstable``)."""

    epoch: int | None
    score: float | None = None
    degenerate: bool | None = None
    fallback: str | None = None
    confidence: float | None = None
    unstable: bool | None = None

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Pick:
        epoch = entry.get("epoch")
        return cls(
            None if epoch is None else int(epoch),
            entry.get("score"),
            entry.get("degenerate"),
            entry.get("fallback"),
            entry.get("confidence"),
            entry.get("unstable"),
        )

    @property
    def usable(self) -> bool:
        """False for a degenerate pick without a fallback: ``selected:<it>`` cannot resolve."""
        return not (self.degenerate and not self.fallback)


def picks(scores: Any) -> dict[str, Pick]:
    """``{selector: Pick}`` in file order (entries that are not objects are left out)."""
    return {s: Pick.from_json(p) for s, p in _part(scores, "selected").items() if isinstance(p, Mapping)}


def pick_of(scores: Any, selector: str) -> Pick | None:
    """The pick of one selector, or None when the file has none for it."""
    return picks(scores).get(selector)


@dataclass(frozen=True)
class CheckpointScores:
    """One entry of ``checkpoints``: identity, raw estimator values (with ``<key>_se``), their
    replicates and settings hashes per estimator, normalized terms and score per selector."""

    epoch: int
    sha256: str | None
    val_acc: float | None = None
    raw: dict[str, dict[str, float]] = field(default_factory=dict)
    replicates: dict[str, dict[str, Any]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    normalized: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> CheckpointScores:
        return cls(
            entry["epoch"],
            entry.get("sha256"),
            entry.get("val_acc"),
            entry.get("raw", {}),
            entry.get("replicates", {}),
            entry.get("hashes", {}),
            entry.get("normalized", {}),
            _costs(entry),
        )


def _costs(entry: Any) -> dict[str, float]:
    """A checkpoint's ``cost_s`` with its numeric entries only ({} when missing or malformed)."""
    return {
        k: float(v)
        for k, v in _part(entry, "cost_s").items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def checkpoints(scores: Mapping[str, Any]) -> list[CheckpointScores]:
    """The scored checkpoints in epoch order (``KeyError`` when the file has no checkpoints)."""
    return [CheckpointScores.from_json(c) for c in scores["checkpoints"]]


def checkpoint_shas(scores: Mapping[str, Any]) -> dict[int, str | None]:
    """``{epoch: sha256}`` of the scored checkpoints: what the scores describe."""
    return {c["epoch"]: c.get("sha256") for c in scores["checkpoints"]}


def checkpoint_epochs(scores: Any) -> list[int]:
    """The scored checkpoints' epochs ([] when the file has none)."""
    return [int(c["epoch"]) for c in scores.get("checkpoints", [])] if isinstance(scores, Mapping) else []


def selector_score_by_epoch(scores: Any, selector: str) -> dict[int, float]:
    """A selector's normalized score per checkpoint (checkpoints without one are left out)."""
    out = {}
    for c in scores.get("checkpoints", []) if isinstance(scores, Mapping) else []:
        v = _part(_part(c, "normalized"), selector).get("score")
        if v is not None:
            out[int(c["epoch"])] = float(v)
    return out


def estimate_costs(scores: Any) -> dict[int, dict[str, float]]:
    """``{epoch: {"features" | estimator: seconds}}``: what each checkpoint's stored estimates cost
    (module doc, "Costs"); checkpoints without ``cost_s`` (files written before it) are left out."""
    out = {}
    for c in scores.get("checkpoints", []) if isinstance(scores, Mapping) else []:
        costs = _costs(c)
        if costs and isinstance(c, Mapping) and "epoch" in c:
            out[int(c["epoch"])] = costs
    return out


def estimates_cost_s(scores: Any, estimators: list[str]) -> float | None:
    """Seconds the stored estimates of ``estimators`` cost on every checkpoint, with the feature
    pass: the sum over checkpoints of ``features`` and their ``cost_s``; None when any is not
    recorded (or no estimator is named), e.g. a file written before costs were."""
    costs, epochs, need = estimate_costs(scores), checkpoint_epochs(scores), ["features", *estimators]
    if not estimators or not epochs or any(k not in costs.get(e, {}) for e in epochs for k in need):
        return None
    return float(sum(costs[e][k] for e in epochs for k in need))


def ensemble_picks(scores: Mapping[str, Any]) -> dict[int, list[int]]:
    """``{K: epochs}``: the stored ``selected_ensemble:K`` members for every precomputed K."""
    return {int(k): v["epochs"] for k, v in scores["selected_ensemble"]["by_k"].items()}


def proxy_entries(scores: Any) -> dict[str, dict]:
    """The proxy selectors' records ``{selector: {settings, hash, candidates, rungs, pick,
    confidence, cost}}`` ({} without any)."""
    return dict(_part(scores, "proxy"))


def selector_estimators(scores: Any, selector: str) -> list[str] | None:
    """The estimators a computed selector used (None when the file does not say)."""
    return _part(_part(scores, "selectors"), selector).get("estimators")


def environment_of(scores: Any) -> dict[str, Any] | None:
    """The scorer's fingerprint (``environment``), or None when the file records none (written
    before fingerprints) or it is malformed."""
    value = scores.get("environment") if isinstance(scores, Mapping) else None
    return dict(value) if isinstance(value, dict) else None


def scoring_timings(scores: Any) -> dict[str, Any]:
    """The latest scoring run's ``timings`` ({} when not recorded)."""
    return _part(scores, "timings")
