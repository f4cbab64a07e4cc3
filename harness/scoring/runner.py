"""``ckd score``: score every checkpoint of every finished trajectory, select, write the scores file.

Per trajectory (``score_trajectory``):

1. the scoring sample: ``scoring.num_samples`` rows of the *validation* split (all of it if it is
   smaller), drawn with ``scoring.seed``, the same for every checkpoint, cut into
   ``scoring.folds`` random folds (the replicates behind every error bar); when ``recon`` runs,
   also a pool of ``scoring.recon.train_samples x seeds`` rows of the (unaugmented) *training*
   split, from which each decoder seed draws the rows it fits and stops on (``build_scoring_data``);
2. one **shared pass**: all checkpoints still to score are loaded at once, and each batch is moved
   to the device once and fed to every checkpoint, collecting logits, penultimate features and
   (when ``recon`` runs and they fit in ``scoring.feature_cache_mb``) the last conv stage of the
   training rows and the sample; otherwise the conv stage is recomputed batch by batch;
3. each estimator estimates all those checkpoints at once, with replicates (``Estimator.estimate``:
   jackknife over the folds; ``recon``: decoder seeds x folds, see ``recon.py``);
4. the proxy selectors the config asks for (``proxy.py``: short distillations from every
   checkpoint, successive halving; reused when their settings and checkpoints are unchanged);
5. normalization, selection and its stability (``selection.py``, ``replicates.py``) over *all*
   checkpoints, and an atomic write of ``<storage>/<experiment>/scores/<trajectory>.json``.

Re-running reuses every (checkpoint, estimator) result whose checkpoint sha256 and settings hash
(estimator hyperparameters + scoring sample: data set, split, size, seed, folds; the training
rows too for ``recon``) are unchanged. ``scores_fresh(cfg, name)`` answers, without loading any
model, whether a trajectory's scores file already matches the config.

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
                    normalized: {selector: {x, y, score, x_se, y_se, score_se}}}]
                    (a proxy selector's: {score = rung reached + val acc there, rung, val_acc})
    selected      {selector: {epoch, score, degenerate, fallback, confidence, unstable}}   T*
    proxy         {selector: {settings, hash, candidates, rungs, pick, confidence, cost}}  (proxy.py)
    selection_confidence {selector: {"epoch": P(that checkpoint is T*)}}
    selected_ensemble {selector, min_gap_fraction, min_gap_epochs,
                       by_k: {"K": {epochs: [...], gap_epochs, score_sum}}}
    timings       {total_s, load_s, features_s, estimators_s: {name: s}, per_checkpoint_s,
                   checkpoints_scored, checkpoints_reused, estimator_checkpoints_scored: {name: n},
                   shared_pass, device, num_threads, proxy_s}   (of the latest run)
    written_at    ISO time
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from harness.config import ExperimentConfig, config_hash, to_dict
from harness.store import CheckpointStore, Trajectory, atomic_write_json

from .base import (
    CheckpointFeatures,
    Estimate,
    Estimator,
    ScoringData,
    ScoringError,
    TensorConvSource,
    build_estimator,
)
from .replicates import standard_error
from .selection import (
    SCORES_SCHEMA_VERSION,
    SELECTORS,
    ScoresError,
    available_selectors,
    is_degenerate,
    is_unstable,
    read_scores,
    scores_path,
    select_ensemble,
    select_single,
    selection_stability,
    selector_scores,
)

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- data


def _rows_of(split: Any, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Inputs and labels of ``rows`` of a split (in-memory tensors or an indexable dataset)."""
    if hasattr(split, "x") and hasattr(split, "y"):
        return split.x[rows.to(split.x.device)].cpu(), split.y[rows.to(split.y.device)].cpu()
    items = [split[int(i)] for i in rows]
    return torch.stack([torch.as_tensor(a) for a, _ in items]).float(), torch.as_tensor(
        [int(b) for _, b in items], dtype=torch.long
    )


def _draw(n_total: int, n: int, salt: str, seed: int) -> Tensor:
    """``n`` of ``n_total`` row indices drawn with (salt, seed), sorted."""
    from harness.data import derive_seed

    gen = torch.Generator().manual_seed(derive_seed(salt, seed) % 2**63)
    return torch.randperm(n_total, generator=gen)[:n].sort().values


def assign_folds(n: int, folds: int, seed: int) -> Tensor:
    """Fold id of each of ``n`` rows: a random balanced partition into ``folds`` (sizes differ by <= 1)."""
    gen = torch.Generator().manual_seed(seed * 7919 + folds)
    ids = torch.empty(n, dtype=torch.long)
    ids[torch.randperm(n, generator=gen)] = torch.arange(n) % folds
    return ids


def _needs_train_rows(cfg: ExperimentConfig) -> bool:
    from .base import ESTIMATORS

    return any(ESTIMATORS.get(name).needs_train_rows for name in cfg.scoring.estimators)


def build_scoring_data(cfg: ExperimentConfig) -> ScoringData:
    """The fixed scoring sample of the validation split (never the test split), its folds, and,
    when an estimator trains something (``recon``), rows of the training split (unaugmented)."""
    from harness.experiment import load_splits

    sc = cfg.scoring
    splits = load_splits(cfg)
    val = splits.val
    n_val = len(val)
    n = min(sc.num_samples, n_val)
    x, y = _rows_of(val, _draw(n_val, n, "scoring-sample", sc.seed))
    train_x, n_train = None, len(splits.train_eval)
    if _needs_train_rows(cfg):
        m = min(sc.recon.train_samples * sc.recon.seeds, n_train)  # a pool: each decoder seed draws its own rows
        train_x, _ = _rows_of(splits.train_eval, _draw(n_train, m, "scoring-train-sample", sc.seed))
    info = {
        "dataset": cfg.data.name,
        "split": "val",
        "val_size": n_val,
        "num_samples": n,
        "seed": sc.seed,
        "folds": int(sc.folds),
        "train_split": "train" if train_x is not None else None,
        "train_size": n_train,
        "train_rows": 0 if train_x is None else len(train_x),
        "data_seed": cfg.data.seed,
        "val_fraction": cfg.data.val_fraction,
        "data_num_samples": cfg.data.num_samples,
        "data_options": to_dict(cfg.data.options) if hasattr(cfg.data, "options") else {},
    }
    folds = assign_folds(n, min(int(sc.folds), max(n // 2, 1)), sc.seed)
    return ScoringData(x=x, y=y, num_classes=int(splits.num_classes), info=info, folds=folds, train_x=train_x)


# ----------------------------------------------------------------------------- shared pass


class ModelConvSource:
    """Conv stages computed on the fly: one batch of inputs, fed to all K frozen models."""

    def __init__(self, models: Sequence[nn.Module], x: Tensor, device: torch.device) -> None:
        self.models, self.x, self.device = list(models), x, device
        self.num_checkpoints = len(self.models)

    @torch.no_grad()
    def batch(self, index: Tensor) -> Tensor:
        xb = self.x[index.to(self.x.device)].to(self.device)
        return torch.stack([m.forward_features(xb).conv for m in self.models])


def conv_inputs(data: ScoringData) -> Tensor:
    """The rows whose conv stages estimators see: the training rows (if any), then the sample."""
    return data.x if data.train_x is None else torch.cat([data.train_x, data.x])


@torch.no_grad()
def extract_features(
    models: Sequence[nn.Module],
    epochs: Sequence[int],
    data: ScoringData,
    batch_size: int,
    device: torch.device,
    keep_conv: bool,
) -> tuple[list[CheckpointFeatures], Tensor | None]:
    """One pass over the scoring sample (and the training rows, for the conv cache): every batch
    goes to the device once, then to every model.

    Returns per-checkpoint logits/penultimate of the sample (CPU) and, with ``keep_conv``, the conv
    stages of ``conv_inputs(data)`` as one ``[K, M + N, C, *spatial]`` tensor on ``device``.
    """
    logits: list[list[Tensor]] = [[] for _ in models]
    pen: list[list[Tensor]] = [[] for _ in models]
    conv: list[list[Tensor]] = [[] for _ in models]
    if keep_conv and data.train_x is not None:
        for start in range(0, len(data.train_x), batch_size):
            xb = data.train_x[start : start + batch_size].to(device)
            for k, model in enumerate(models):
                conv[k].append(model.forward_features(xb).conv.float())
    for start in range(0, len(data), batch_size):
        xb = data.x[start : start + batch_size].to(device)
        for k, model in enumerate(models):
            out = model.forward_features(xb)
            logits[k].append(out.logits.float().cpu())
            pen[k].append(out.penultimate.float().cpu())
            if keep_conv:
                conv[k].append(out.conv.float())
    feats = [CheckpointFeatures(e, torch.cat(lg), torch.cat(p)) for e, lg, p in zip(epochs, logits, pen)]
    cached = torch.stack([torch.cat(c) for c in conv]) if keep_conv else None
    return feats, cached


def _conv_bytes(model: nn.Module, data: ScoringData, device: torch.device) -> int | None:
    """Bytes of one checkpoint's conv stage on all conv rows (None: the model has none)."""
    with torch.no_grad():
        conv = model.forward_features(data.x[:2].to(device)).conv
    rows = len(data) + (0 if data.train_x is None else len(data.train_x))
    return None if conv is None else 4 * conv[0].numel() * rows


# ----------------------------------------------------------------------------- scoring


TRAIN_INFO_KEYS = ("train_split", "train_size", "train_rows")


def settings_hash(estimator: Estimator, data: ScoringData) -> str:
    """Cache key of an estimator's results: its hyperparameters + the scoring sample's identity
    (and the training rows' only for an estimator that trains on them)."""
    info = data.info if estimator.needs_train_rows else {k: v for k, v in data.info.items() if k not in TRAIN_INFO_KEYS}
    return config_hash({"estimator": estimator.name, "params": estimator.params(), "data": info})


def _estimators(cfg: ExperimentConfig) -> dict[str, Estimator]:
    """The configured estimators by name, in ``scoring.estimators`` order."""
    names = list(cfg.scoring.estimators)
    if not names:
        raise ScoringError("scoring.estimators is empty; name at least one of the registered estimators")
    return {name: build_estimator(name, cfg.scoring) for name in names}


def _load_previous(store: CheckpointStore, name: str) -> dict[int, dict]:
    """The checkpoints of the trajectory's previous scores file by epoch ({} when there is none)."""
    if not scores_path(store, name).is_file():
        return {}
    try:
        return {c["epoch"]: c for c in read_scores(store, name)["checkpoints"]}
    except (ScoresError, KeyError, TypeError) as e:
        logger.info(f"[score] {name}: ignoring the previous scores file ({e})")
        return {}


@dataclass
class _Plan:
    """What one ``score_trajectory`` call computes.

    ``raw`` starts with the reused results (checkpoint and settings hash unchanged) and is
    completed by the run; ``todo`` lists, per estimator, the epochs it must (re)score.
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

    @property
    def need(self) -> list[int]:
        """Every epoch that at least one estimator must score, ascending."""
        return sorted({e for es in self.todo.values() for e in es})


def _plan(
    cfg: ExperimentConfig, store: CheckpointStore, trajectory: Trajectory | str, data: ScoringData | None
) -> _Plan:
    """Plan a run: which (checkpoint, estimator) results the previous scores file still holds."""
    traj = store.trajectory(trajectory) if isinstance(trajectory, str) else trajectory
    manifest = traj.manifest()
    epochs = traj.finished_epochs()
    entries = {c["epoch"]: c for c in manifest["checkpoints"]}
    estimators = _estimators(cfg)
    data = data if data is not None else build_scoring_data(cfg)
    hashes = {name: settings_hash(est, data) for name, est in estimators.items()}
    previous = _load_previous(store, traj.name)

    raw: dict[int, dict[str, dict[str, float]]] = {e: {} for e in epochs}
    reps: dict[int, dict[str, dict[str, list[list[float]]]]] = {e: {} for e in epochs}
    todo: dict[str, list[int]] = {name: [] for name in estimators}
    for e in epochs:
        old = previous.get(e)
        same_ckpt = old is not None and old.get("sha256") == entries[e]["sha256"]
        for name in estimators:
            if same_ckpt and old.get("hashes", {}).get(name) == hashes[name] and name in old.get("raw", {}):
                raw[e][name] = old["raw"][name]
                reps[e][name] = old.get("replicates", {}).get(name, {})
            else:
                todo[name].append(e)
    return _Plan(traj, manifest, epochs, estimators, hashes, data, raw, todo, reps)


def _keep_conv(plan: _Plan, group: list[int], models: list[nn.Module], cache_mb: float, device: torch.device) -> bool:
    """Whether the group's conv stages are cached on the device (they are needed and fit ``cache_mb``)."""
    est = plan.estimators
    if not any(est[n].needs_conv and set(plan.todo[n]) & set(group) for n in est):
        return False
    per_ckpt = _conv_bytes(models[0], plan.data, device)
    if per_ckpt is None:
        users = [n for n in est if est[n].needs_conv]
        raise ScoringError(
            f"estimator(s) {users} need a last conv stage, but {plan.manifest.get('arch')} (trajectory "
            f"{plan.traj.name}) has none; remove them from scoring.estimators for this teacher"
        )
    return per_ckpt * len(group) <= cache_mb * 2**20


def _score_group(
    cfg: ExperimentConfig, plan: _Plan, group: list[int], device: torch.device, timings: dict[str, Any]
) -> None:
    """Load a group of checkpoints, run the shared pass, let every estimator score its part."""
    sc, data = cfg.scoring, plan.data
    t0 = time.perf_counter()
    models = [plan.traj.load_model(e, device) for e in group]
    timings["load_s"] += time.perf_counter() - t0
    keep_conv = _keep_conv(plan, group, models, sc.feature_cache_mb, device)
    t0 = time.perf_counter()
    feats, conv_cache = extract_features(models, group, data, sc.batch_size, device, keep_conv)
    timings["features_s"] += time.perf_counter() - t0
    for name, est in plan.estimators.items():
        todo = set(plan.todo[name])
        sub = [i for i, e in enumerate(group) if e in todo]
        if not sub:
            continue
        source = _conv_source(est, data, conv_cache, [models[i] for i in sub], sub, device)
        t0 = time.perf_counter()
        results = est.estimate([feats[i] for i in sub], data, source, device)
        timings["estimators_s"][name] += time.perf_counter() - t0
        for i, res in zip(sub, results):
            plan.raw[group[i]][name] = _values_with_se(res)
            plan.reps[group[i]][name] = {k: [[float(v) for v in row] for row in r] for k, r in res.replicates.items()}


def _conv_source(
    est: Estimator,
    data: ScoringData,
    cache: Tensor | None,
    models: list[nn.Module],
    sub: list[int],
    device: torch.device,
) -> Any:
    """The conv stages an estimator sees: rows ``conv_inputs(data)`` if it trains on the training
    rows, else the sample's only; from the cache, or recomputed batch by batch."""
    if not est.needs_conv:
        return None
    offset = 0 if est.needs_train_rows or data.train_x is None else len(data.train_x)
    if cache is not None:
        return TensorConvSource(cache[sub][:, offset:])
    return ModelConvSource(models, conv_inputs(data)[offset:], device)


def _values_with_se(est: Estimate) -> dict[str, float]:
    """An estimate's values plus ``<key>_se`` for every key with replicates (``replicates.py``)."""
    out = {k: float(v) for k, v in est.values.items()}
    for key, reps in est.replicates.items():
        out[f"{key}_se"] = standard_error(reps)
    return out


def _run(cfg: ExperimentConfig, plan: _Plan, shared: bool, device: torch.device) -> dict[str, Any]:
    """Score what the plan needs, all checkpoints in one group (``shared``) or one per group.

    Fills ``plan.raw``; returns the (unrounded) load, feature and per-estimator timings.
    """
    need = plan.need
    timings: dict[str, Any] = {"load_s": 0.0, "features_s": 0.0, "estimators_s": {n: 0.0 for n in plan.estimators}}
    groups = ([need] if need else []) if shared else [[e] for e in need]
    for group in groups:
        _score_group(cfg, plan, group, device, timings)
    for name in plan.estimators:
        if plan.todo[name]:
            logger.info(
                f"[score] {plan.traj.name} {name}: {timings['estimators_s'][name]:.2f}s for {len(plan.todo[name])} checkpoints"
            )
    return timings


def _finish_timings(
    timings: dict[str, Any], plan: _Plan, began: float, shared: bool, device: torch.device
) -> dict[str, Any]:
    """Round the run's timings and add the totals and counts of the scores file's ``timings``."""
    need = plan.need
    timings["features_s"] = round(timings["features_s"], 4)
    timings["load_s"] = round(timings["load_s"], 4)
    timings["estimators_s"] = {k: round(v, 4) for k, v in timings["estimators_s"].items()}
    timings["total_s"] = round(time.perf_counter() - began, 4)
    timings["per_checkpoint_s"] = round(timings["total_s"] / len(need), 4) if need else 0.0
    timings.update(
        checkpoints_scored=len(need),
        checkpoints_reused=len(plan.epochs) - len(need),
        shared_pass=shared,
        estimator_checkpoints_scored={n: len(plan.todo[n]) for n in plan.estimators},
        device=str(device),
        num_threads=torch.get_num_threads(),
    )
    return timings


def _fmt(value: float | None, se: float | None) -> str:
    """``value±se`` with enough digits to show the error bar."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if se is None or not math.isfinite(se) or se <= 0:
        return f"{value:.4g}"
    digits = max(0, 1 - math.floor(math.log10(se)))
    return f"{value:.{digits}f}±{se:.{digits}f}"


def pick_text(selected: dict[str, dict]) -> str:
    """``paper=e20 (p=0.62) kde=e30 (p=0.31, unstable) binning=degenerate``: picks with their confidence."""
    parts = []
    for s, v in selected.items():
        if v.get("degenerate") and not v.get("fallback"):
            parts.append(f"{s}=degenerate")
            continue
        flags = [f"p={v['confidence']:.2f}"] if v.get("confidence") is not None else []
        flags += ["unstable"] if v.get("unstable") else []
        flags += [f"via {v['fallback']}"] if v.get("fallback") else []
        parts.append(f"{s}=e{v['epoch']} ({', '.join(flags)})" if flags else f"{s}=e{v['epoch']}")
    return " ".join(parts) or "-"


def _log_table(name: str, scores: dict) -> None:
    """One line per checkpoint: every selection term with its error bar, and P(T*) per selector."""
    terms = sorted({t for s in scores["selectors"].values() for t in (s["x"], s["y"]) if t})
    conf = scores.get("selection_confidence", {})
    for c in scores["checkpoints"]:
        vals = []
        for t in terms:
            est, key = t.split(".", 1)
            raw = c["raw"].get(est, {})
            vals.append(f"{t} {_fmt(raw.get(key), raw.get(key + '_se'))}")
        p = " ".join(f"{s} {conf[s][str(c['epoch'])]:.2f}" for s in conf)
        logger.info(f"[score] {name} e{c['epoch']}: {'  '.join(vals)}  P(T*): {p}")


def _log_selection(name: str, scores: dict, path: Path) -> None:
    """Log the error bars and picks (and warn about degenerate and unstable ones) of a fresh scores file."""
    _log_table(name, scores)
    flat = [s for s, v in scores["selected"].items() if v["degenerate"]]
    if flat:
        logger.warning(
            f"[score] {name}: the scores of {', '.join(flat)} are equal for every checkpoint (saturated "
            "estimator): selected:<it> fails unless scoring.degenerate_fallback is set"
        )
    shaky = [
        s
        for s, v in scores["selected"].items()
        if v.get("unstable") and not (v["degenerate"] and not v.get("fallback"))
    ]
    if shaky:
        logger.warning(
            f"[score] {name}: unstable picks (below 0.5 of the resamples of the replicates): {', '.join(shaky)}"
        )
    ens = scores["selected_ensemble"]
    ens_txt = " ".join(f"K={k}:{v['epochs']}" for k, v in ens["by_k"].items())
    t = scores["timings"]
    logger.info(
        f"[score] {name}: selected {pick_text(scores['selected'])}; ensembles ({ens['selector']}) {ens_txt or '-'}; "
        f"{t['total_s']:.1f}s ({t['per_checkpoint_s']:.2f}s per checkpoint) -> {path}"
    )


def score_trajectory(
    cfg,
    store: CheckpointStore,
    trajectory: Trajectory | str,
    data: ScoringData | None = None,
    *,
    shared: bool = True,
) -> dict:
    """Score one finished trajectory, write its scores file, return a summary.

    ``data``: a prebuilt scoring sample (``build_scoring_data(cfg)``) so that a long-lived scorer
    can hold it once for many trajectories. ``shared=False`` scores one checkpoint at a time (a
    separate data pass and decoder training per checkpoint; for the benchmark only).
    Summary: ``{selected: {selector: epoch}, picks: {selector: scores-file pick}, selected_ensemble:
    {K: [epochs]}, timings, path}``.
    """
    from harness.training import resolve_device

    began = time.perf_counter()
    plan = _plan(cfg, store, trajectory, data)
    name, need = plan.traj.name, plan.need
    device = resolve_device(cfg.device)
    logger.info(
        f"[score] {name}: {len(plan.epochs)} checkpoints, {len(need)} to score ({len(plan.epochs) - len(need)} reused), "
        f"estimators {', '.join(plan.estimators)}, {'shared pass' if shared else 'one checkpoint at a time'} on {device}"
    )
    timings = _run(cfg, plan, shared, device)
    proxies = _proxies(cfg, store, plan, device, timings)
    scores = _assemble(cfg, name, plan, proxies)
    scores["timings"] = _finish_timings(timings, plan, began, shared, device)
    path = scores_path(store, name)
    atomic_write_json(path, scores)
    _log_selection(name, scores, path)
    return {
        "selected": {s: v["epoch"] for s, v in scores["selected"].items()},
        "picks": scores["selected"],  # with confidence / unstable / degenerate, for log lines
        "selected_ensemble": {int(k): v["epochs"] for k, v in scores["selected_ensemble"]["by_k"].items()},
        "timings": timings,
        "path": str(path),
    }


def _checkpoint_rows(
    manifest: dict,
    epochs: list[int],
    plan_raw: dict[int, dict[str, dict[str, float]]],
    plan_reps: dict[int, dict[str, dict[str, list[list[float]]]]],
    hashes: dict[str, str],
    normalized: dict[str, dict[str, list[float]]],
) -> list[dict]:
    """The scores file's ``checkpoints``: per epoch its identity, raw values (with ``_se``),
    replicates and normalized scores (with ``x_se`` / ``y_se`` / ``score_se``)."""
    entries = {c["epoch"]: c for c in manifest["checkpoints"]}
    return [
        {
            "epoch": e,
            "sha256": entries[e]["sha256"],
            "val_acc": entries[e].get("val_acc"),
            "raw": plan_raw[e],
            "replicates": plan_reps[e],
            "hashes": dict(hashes),
            "normalized": {s: {k: v[i] for k, v in normalized[s].items()} for s in normalized},
        }
        for i, e in enumerate(epochs)
    ]


def _single_picks(
    sc,
    epochs: list[int],
    normalized: dict[str, dict[str, list[float]]],
    stability: dict[str, dict],
    proxy_picks: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """The scores file's ``selected``: T* per MI selector (those in ``stability``), its score,
    whether all scores tie (``degenerate``; then the ``scoring.degenerate_fallback`` selector's pick,
    if configured and usable), its bootstrap ``confidence`` and whether that is below 0.5
    (``unstable``); then the proxy selectors' picks (``proxy.proxy_pick``)."""
    selected = {}
    for s in stability:
        norm = normalized[s]
        e = select_single(epochs, norm["score"])
        conf = stability[s]["confidence"][str(e)]
        selected[s] = {
            "epoch": e,
            "score": norm["score"][epochs.index(e)],
            "degenerate": is_degenerate(norm["score"]),
            "fallback": None,
            "confidence": conf,
            "unstable": is_unstable(conf),
        }
    selected.update(proxy_picks or {})
    fb = sc.degenerate_fallback
    for s, pick in selected.items():
        if pick["degenerate"] and fb in selected and not selected[fb]["degenerate"]:
            pick.update(
                epoch=selected[fb]["epoch"],
                fallback=fb,
                confidence=selected[fb]["confidence"],
                unstable=selected[fb]["unstable"],
                score=normalized[s]["score"][epochs.index(selected[fb]["epoch"])],
            )
    return selected


def _ensemble_picks(sc, epochs: list[int], values: list[float] | None, min_gap: float) -> dict[str, dict]:
    """The ensemble picks ``by_k`` for every configured K that fits (none without a selector)."""
    by_k: dict[str, dict] = {}
    if values is None:
        return by_k
    for k in sc.ensemble_sizes:
        if k > len(epochs):
            continue
        members, gap = select_ensemble(epochs, values, k, min_gap)
        by_k[str(k)] = {
            "epochs": members,
            "gap_epochs": gap,
            "score_sum": sum(values[epochs.index(m)] for m in members),
        }
    return by_k


def _estimator_info(estimators: dict[str, Estimator], hashes: dict[str, str]) -> dict[str, dict]:
    """The scores file's ``estimators``: parameters, settings hash, keys and description of each."""
    return {
        n: {
            "params": est.params(),
            "hash": hashes[n],
            "x_key": est.x_key,
            "y_key": est.y_key,
            "plane_x_key": est.plane_keys()[0],
            "plane_y_key": est.plane_keys()[1],
            "description": est.description,
        }
        for n, est in estimators.items()
    }


def _proxies(
    cfg, store: CheckpointStore, plan: _Plan, device: torch.device, timings: dict[str, Any]
) -> dict[str, dict]:
    """The proxy selectors' results (``proxy.py``) for the plan's checkpoints; ``timings["proxy_s"]``."""
    from .proxy import proxy_results

    began = time.perf_counter()
    entries = {c["epoch"]: c for c in plan.manifest["checkpoints"]}
    out = proxy_results(cfg, store, plan.traj.name, [(e, entries[e]["sha256"]) for e in plan.epochs], device)
    timings["proxy_s"] = round(time.perf_counter() - began, 4)
    return out


def _selection(cfg, plan: _Plan, proxies: dict[str, dict]) -> tuple[dict, dict, dict, list[str]]:
    """Normalized scores (MI selectors with their bootstrap SEs, then the proxy selectors), picks,
    selection confidences and the computed selectors, in table order."""
    from .proxy import checkpoint_scores, proxy_pick

    sc, epochs = cfg.scoring, plan.epochs
    rows = [plan.raw[e] for e in epochs]
    selectors = available_selectors(plan.estimators)
    normalized = {s: selector_scores(rows, SELECTORS[s], sc.normalization, sc.x_weight, sc.y_weight) for s in selectors}
    stability = selection_stability(
        epochs,
        rows,
        [plan.reps[e] for e in epochs],
        selectors,
        sc.normalization,
        sc.x_weight,
        sc.y_weight,
        sc.bootstrap,
        sc.seed,
    )
    for s in selectors:
        normalized[s].update({k: v for k, v in stability[s].items() if k.endswith("_se")})
    normalized.update({p: checkpoint_scores(r, epochs) for p, r in proxies.items()})
    picks = _single_picks(sc, epochs, normalized, stability, {p: proxy_pick(r) for p, r in proxies.items()})
    confidence = {
        **{s: stability[s]["confidence"] for s in selectors},
        **{p: r["confidence"] for p, r in proxies.items()},
    }
    return normalized, picks, confidence, selectors + list(proxies)


def _assemble(cfg, name: str, plan: _Plan, proxies: dict[str, dict] | None = None) -> dict:
    """Normalize, resample, select and lay out the scores file (see module doc)."""
    sc, epochs = cfg.scoring, plan.epochs
    normalized, picks, confidence, selectors = _selection(cfg, plan, proxies or {})
    ens_selector = sc.ensemble_selector if sc.ensemble_selector in selectors else (selectors[0] if selectors else None)
    total_epochs = int(plan.manifest.get("epochs") or max(epochs))
    min_gap = sc.min_gap_fraction * total_epochs
    values = normalized[ens_selector]["score"] if ens_selector is not None else None
    m = plan.manifest
    return {
        "schema_version": SCORES_SCHEMA_VERSION,
        "trajectory": name,
        "arch": m.get("arch"),
        "dataset": m.get("dataset"),
        "seed": m.get("seed"),
        "epochs": total_epochs,
        "data": plan.data.info,
        "estimators": _estimator_info(plan.estimators, plan.hashes),
        "selectors": {s: SELECTORS[s].to_json() for s in selectors},
        "normalization": sc.normalization,
        "weights": {"x": sc.x_weight, "y": sc.y_weight},
        "replicates": {
            "folds": plan.data.num_folds,
            "bootstrap": int(sc.bootstrap),
            "degenerate_fallback": sc.degenerate_fallback,
            "seeds": {n: _seeds_of(plan, n) for n in plan.estimators},
        },
        "checkpoints": _checkpoint_rows(m, epochs, plan.raw, plan.reps, plan.hashes, normalized),
        "selected": picks,
        "selection_confidence": confidence,
        "proxy": proxies or {},
        "selected_ensemble": {
            "selector": ens_selector,
            "min_gap_fraction": sc.min_gap_fraction,
            "min_gap_epochs": min_gap,
            "by_k": _ensemble_picks(sc, epochs, values, min_gap),
        },
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _seeds_of(plan: _Plan, name: str) -> int:
    """How many seeds (rows of the replicate arrays) an estimator's results have (1 if none)."""
    for e in plan.epochs:
        for reps in plan.reps[e].get(name, {}).values():
            return len(reps)
    return 1


def run_scoring(cfg: ExperimentConfig) -> dict:
    """Score every finished trajectory of the config's store; returns ``{trajectory: summary}``."""
    from harness.experiment import open_store, set_threads

    set_threads(cfg)
    store = open_store(cfg)
    trajectories = store.trajectories()
    finished = [t for t in trajectories if t.is_finished()]
    for t in trajectories:
        if not t.is_finished():
            logger.info(f"[score] {t.name}: not finished; skipping (run `ckd teachers CONFIG` to finish it)")
    if not finished:
        logger.info(f"[score] no finished trajectories in {store.trajectories_dir}; run `ckd teachers CONFIG` first")
        return {}
    data = build_scoring_data(cfg)
    logger.info(
        f"[score] scoring sample: {len(data)} of {data.info['val_size']} validation samples of {data.info['dataset']}"
    )
    summary = {}
    for t in finished:
        dataset = t.manifest().get("dataset")
        if dataset not in (None, cfg.data.name):
            logger.info(f"[score] {t.name}: trained on {dataset}, not data.name={cfg.data.name}; skipping")
            continue
        summary[t.name] = score_trajectory(cfg, store, t, data)
    return summary


# ----------------------------------------------------------------------------- freshness


def scores_fresh(cfg: ExperimentConfig, name: str) -> bool:
    """True when ``scores/<name>.json`` already matches the trajectory's checkpoints and the
    config's estimators, scoring sample and selection settings, so it need not be scored again.
    Any doubt (missing file or keys, other schema) answers False; ``score_trajectory`` then
    decides exactly, per (checkpoint, estimator)."""
    try:
        from harness.experiment import open_store

        from .proxy import proxy_fresh

        store = open_store(cfg)
        scores = read_scores(store, name)
        traj = store.trajectory(name)
        return (
            _checkpoints_match(traj, scores)
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
    return traj.is_finished() and on_disk == {c["epoch"]: c.get("sha256") for c in scores["checkpoints"]}


def _estimators_match(sc, scores: dict) -> bool:
    """Every configured estimator is in the file, with the configured parameters, for every checkpoint."""
    for est in sc.estimators:
        if scores["estimators"][est]["params"] != build_estimator(est, sc).params():
            return False
        if any(est not in c.get("raw", {}) for c in scores["checkpoints"]):
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
    return sc.ensemble_selector not in scores.get("selected", {}) or (
        scores.get("selected_ensemble", {}).get("selector") == sc.ensemble_selector
    )


# ----------------------------------------------------------------------------- information plane


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
        names = sorted(p.stem for p in store.scores_dir.glob("*.json")) if store.scores_dir.is_dir() else []
    rows = []
    for name in names:
        scores = read_scores(store, name)
        for sel_name in scores["selectors"]:
            if SELECTORS[sel_name].kind != "mi":  # proxy selectors have no information-plane terms
                continue
            for c in scores["checkpoints"]:
                rows.append(_plane_row(scores, name, sel_name, c))
    return rows


def _plane_row(scores: dict, name: str, sel_name: str, c: dict) -> dict[str, Any]:
    """One information-plane row (see ``information_plane``)."""
    sel = SELECTORS[sel_name]
    norm = c["normalized"][sel_name]
    row: dict[str, Any] = {"trajectory": name, "epoch": c["epoch"], "estimator": sel_name}
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
        values = c["raw"][est]
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
    row["val_acc"] = c.get("val_acc")
    return row
