"""The shared feature pass: every checkpoint still to score sees every batch once.

All checkpoints of a group are loaded at once, and each batch is moved to the device once and fed
to every checkpoint, collecting logits, penultimate features and (when an estimator needs them,
``recon``, and they fit in ``scoring.feature_cache_mb``) the last conv stage of the training rows
and the sample; otherwise the conv stage is recomputed batch by batch (``ModelConvSource``).
Then each estimator estimates all those checkpoints at once, with replicates
(``Estimator.estimate``: jackknife over the folds; ``recon``: decoder seeds x folds).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from harness.config import ExperimentConfig

from .base import CheckpointFeatures, Estimate, Estimator, ScoringData, ScoringError, TensorConvSource
from .plan import ScoringPlan
from .replicates import standard_error


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


def conv_bytes(model: nn.Module, data: ScoringData, device: torch.device) -> int | None:
    """Bytes of one checkpoint's conv stage on all conv rows (None: the model has none)."""
    with torch.no_grad():
        conv = model.forward_features(data.x[:2].to(device)).conv
    rows = len(data) + (0 if data.train_x is None else len(data.train_x))
    return None if conv is None else 4 * conv[0].numel() * rows


def conv_source(
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


def _keep_conv(
    plan: ScoringPlan, group: list[int], models: list[nn.Module], cache_mb: float, device: torch.device
) -> bool:
    """Whether the group's conv stages are cached on the device (they are needed and fit ``cache_mb``)."""
    est = plan.estimators
    if not any(est[n].needs_conv and set(plan.todo[n]) & set(group) for n in est):
        return False
    per_ckpt = conv_bytes(models[0], plan.data, device)
    if per_ckpt is None:
        users = [n for n in est if est[n].needs_conv]
        raise ScoringError(
            f"estimator(s) {users} need a last conv stage, but {plan.manifest.get('arch')} (trajectory "
            f"{plan.traj.name}) has none; remove them from scoring.estimators for this teacher"
        )
    return per_ckpt * len(group) <= cache_mb * 2**20


def _score_group(
    cfg: ExperimentConfig, plan: ScoringPlan, group: list[int], device: torch.device, timings: dict[str, Any]
) -> None:
    """Load a group of checkpoints, run the shared pass, let every estimator score its part; the
    costs (``plan.costs``): the pass's per checkpoint (unless one is stored: the first pass's) and
    each estimator's, its group time split evenly among the checkpoints it scored."""
    sc, data = cfg.scoring, plan.data
    t0 = time.perf_counter()
    models = [plan.traj.load_model(e, device) for e in group]
    load_s = time.perf_counter() - t0
    timings["load_s"] += load_s
    keep_conv = _keep_conv(plan, group, models, sc.feature_cache_mb, device)
    t0 = time.perf_counter()
    feats, conv_cache = extract_features(models, group, data, sc.batch_size, device, keep_conv)
    features_s = time.perf_counter() - t0
    timings["features_s"] += features_s
    for e in group:
        plan.costs[e].setdefault("features", (load_s + features_s) / len(group))
    for name, est in plan.estimators.items():
        todo = set(plan.todo[name])
        sub = [i for i, e in enumerate(group) if e in todo]
        if not sub:
            continue
        source = conv_source(est, data, conv_cache, [models[i] for i in sub], sub, device)
        t0 = time.perf_counter()
        results = est.estimate([feats[i] for i in sub], data, source, device)
        elapsed = time.perf_counter() - t0
        timings["estimators_s"][name] += elapsed
        for i, res in zip(sub, results):
            plan.costs[group[i]][name] = elapsed / len(sub)
            plan.raw[group[i]][name] = _values_with_se(res)
            plan.reps[group[i]][name] = {k: [[float(v) for v in row] for row in r] for k, r in res.replicates.items()}


def _values_with_se(est: Estimate) -> dict[str, float]:
    """An estimate's values plus ``<key>_se`` for every key with replicates (``replicates.py``)."""
    out = {k: float(v) for k, v in est.values.items()}
    for key, reps in est.replicates.items():
        out[f"{key}_se"] = standard_error(reps)
    return out


def score_checkpoints(cfg: ExperimentConfig, plan: ScoringPlan, shared: bool, device: torch.device) -> dict[str, Any]:
    """Score what the plan needs, all checkpoints in one group (``shared``) or one per group.

    Fills ``plan.raw``; returns the (unrounded) load, feature and per-estimator timings.
    """
    need = plan.need
    timings: dict[str, Any] = {"load_s": 0.0, "features_s": 0.0, "estimators_s": {n: 0.0 for n in plan.estimators}}
    groups = ([need] if need else []) if shared else [[e] for e in need]
    for group in groups:
        _score_group(cfg, plan, group, device, timings)
    return timings
