"""Selection assembly: from the estimates of every checkpoint to the scores file's contents.

Normalization, selection and its stability (``selection.py``, ``replicates.py``) over *all*
checkpoints of the trajectory, the proxy selectors' picks (``proxy.py``), the ensemble picks,
and the layout of the scores file (``scores_file.py`` documents it).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import torch

from harness.fingerprint import environment

from .base import Estimator
from .plan import ScoringPlan
from .scores_file import SCORES_SCHEMA_VERSION
from .selection import (
    SELECTORS,
    available_selectors,
    is_degenerate,
    is_unstable,
    select_ensemble,
    select_single,
    selection_stability,
    selector_scores,
)


def assemble_scores(
    cfg,
    name: str,
    plan: ScoringPlan,
    proxies: dict[str, dict] | None = None,
    device: torch.device | str | None = None,
) -> dict:
    """Normalize, resample, select and lay out the scores file (layout: ``scores_file.py``);
    ``device``: the one the scorer ran on (default: ``cfg.device`` resolved), for its fingerprint."""
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
        "checkpoints": _checkpoint_rows(m, epochs, plan, normalized),
        "selected": picks,
        "selection_confidence": confidence,
        "proxy": proxies or {},
        "selected_ensemble": {
            "selector": ens_selector,
            "min_gap_fraction": sc.min_gap_fraction,
            "min_gap_epochs": min_gap,
            "by_k": _ensemble_picks(sc, epochs, values, min_gap),
        },
        "environment": scorer_environment(cfg, device, bool(proxies)),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def scorer_environment(cfg, device: torch.device | str | None, proxies: bool) -> dict[str, Any]:
    """The scores file's ``environment``: the fingerprint of the scorer (its device, the torch
    threads it runs with, as ``set_threads(cfg, "scorer")`` left them) at its precision: fp32 for
    the estimators, ``cfg.precision`` when proxy selectors trained students too."""
    if device is None:
        from harness.training import resolve_device

        device = resolve_device(cfg.device)
    return environment(device, torch.get_num_threads(), str(cfg.precision) if proxies else "fp32")


def _selection(cfg, plan: ScoringPlan, proxies: dict[str, dict]) -> tuple[dict, dict, dict, list[str]]:
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


def _checkpoint_rows(
    manifest: dict, epochs: list[int], plan: ScoringPlan, normalized: dict[str, dict[str, list[float]]]
) -> list[dict]:
    """The scores file's ``checkpoints``: per epoch its identity, raw values (with ``_se``),
    replicates, the estimates' costs (``cost_s``, stored with them: ``scores_file.py``) and
    normalized scores (with ``x_se`` / ``y_se`` / ``score_se``)."""
    entries = {c["epoch"]: c for c in manifest["checkpoints"]}
    return [
        {
            "epoch": e,
            "sha256": entries[e]["sha256"],
            "val_acc": entries[e].get("val_acc"),
            "raw": plan.raw[e],
            "replicates": plan.reps[e],
            "hashes": dict(plan.hashes),
            "cost_s": {k: round(v, 6) for k, v in plan.costs[e].items()},
            "normalized": {s: {k: v[i] for k, v in normalized[s].items()} for s in normalized},
        }
        for i, e in enumerate(epochs)
    ]


def _seeds_of(plan: ScoringPlan, name: str) -> int:
    """How many seeds (rows of the replicate arrays) an estimator's results have (1 if none)."""
    for e in plan.epochs:
        for reps in plan.reps[e].get(name, {}).values():
            return len(reps)
    return 1
