"""``ckd score``: score every checkpoint of every finished trajectory, select, write the scores file.

Per trajectory (``score_trajectory``):

1. the scoring sample (``sample.py``), built once per run and shared by every trajectory;
2. the plan (``plan.py``): which (checkpoint, estimator) results of the previous scores file are
   reused (checkpoint sha256 and settings hash unchanged);
3. the shared feature pass and the estimators (``features.py``) over the checkpoints to score;
4. the proxy selectors the config asks for (``proxy.py``: short distillations from every
   checkpoint, successive halving; reused when their settings and checkpoints are unchanged);
5. normalization, selection and its stability over *all* checkpoints (``assemble.py``), and an
   atomic write of ``<storage>/<experiment>/scores/<trajectory>.json`` (``scores_file.py``, which
   documents its layout).

``freshness.scores_fresh(cfg, name)`` answers, without loading any model, whether a trajectory's
scores file already matches the config; ``plane.information_plane`` reads the files back for the
Fig. 4/7 plots.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from harness.config import ExperimentConfig
from harness.failures import is_deterministic
from harness.store import CheckpointStore, Trajectory

from .assemble import assemble_scores
from .base import ScoringData
from .features import score_checkpoints
from .plan import ScoringPlan, plan_scoring
from .sample import build_scoring_data
from .scores_file import checkpoints, ensemble_picks, picks, write_scores

logger = logging.getLogger(__name__)


def run_scoring(cfg: ExperimentConfig) -> dict:
    """Score every finished trajectory of the config's store; returns ``{trajectory: summary}``."""
    from harness.experiment import open_store, set_threads

    set_threads(cfg, "scorer")
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
    summary, failed = {}, {}
    for t in finished:
        dataset = t.manifest().get("dataset")
        if dataset not in (None, cfg.data.name):
            logger.info(f"[score] {t.name}: trained on {dataset}, not data.name={cfg.data.name}; skipping")
            continue
        try:  # one trajectory's failure does not stop the others' scoring
            summary[t.name] = score_trajectory(cfg, store, t, data)
        except Exception as e:
            if not is_deterministic(e):
                raise
            failed[t.name] = e
            logger.error(f"[score] {t.name}: FAILED ({type(e).__name__}: {e})")
    if failed:  # the others are scored; the first error is raised as it was (its type, its message)
        logger.error(f"[score] scoring failed for {', '.join(failed)} ({len(summary)} scored)")
        raise next(iter(failed.values()))
    return summary


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
    plan = plan_scoring(cfg, store, trajectory, data)
    name, need = plan.traj.name, plan.need
    device = resolve_device(cfg.device)
    logger.info(
        f"[score] {name}: {len(plan.epochs)} checkpoints, {len(need)} to score "
        f"({len(plan.epochs) - len(need)} reused), estimators {', '.join(plan.estimators)}, "
        f"{'shared pass' if shared else 'one checkpoint at a time'} on {device}"
    )
    timings = score_checkpoints(cfg, plan, shared, device)
    _log_estimators(plan, timings)
    proxies = _proxies(cfg, store, plan, device, timings)
    scores = assemble_scores(cfg, name, plan, proxies)
    scores["timings"] = _finish_timings(timings, plan, began, shared, device)
    path = write_scores(store, name, scores)
    _log_selection(name, scores, path)
    return {
        "selected": {s: p.epoch for s, p in picks(scores).items()},
        "picks": scores["selected"],  # with confidence / unstable / degenerate, for log lines
        "selected_ensemble": ensemble_picks(scores),
        "timings": timings,
        "path": str(path),
    }


def _proxies(
    cfg, store: CheckpointStore, plan: ScoringPlan, device: torch.device, timings: dict[str, Any]
) -> dict[str, dict]:
    """The proxy selectors' results (``proxy.py``) for the plan's checkpoints; ``timings["proxy_s"]``."""
    from .proxy import proxy_results

    began = time.perf_counter()
    entries = {c["epoch"]: c for c in plan.manifest["checkpoints"]}
    out = proxy_results(cfg, store, plan.traj.name, [(e, entries[e]["sha256"]) for e in plan.epochs], device)
    timings["proxy_s"] = round(time.perf_counter() - began, 4)
    return out


def _finish_timings(
    timings: dict[str, Any], plan: ScoringPlan, began: float, shared: bool, device: torch.device
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


def _log_estimators(plan: ScoringPlan, timings: dict[str, Any]) -> None:
    """One line per estimator that scored something: its seconds and checkpoints."""
    for name in plan.estimators:
        if plan.todo[name]:
            logger.info(
                f"[score] {plan.traj.name} {name}: {timings['estimators_s'][name]:.2f}s "
                f"for {len(plan.todo[name])} checkpoints"
            )


def _log_selection(name: str, scores: dict, path: Path) -> None:
    """Log the error bars and picks (and warn about degenerate and unstable ones) of a fresh scores file."""
    _log_table(name, scores)
    flat = [s for s, p in picks(scores).items() if p.degenerate]
    if flat:
        logger.warning(
            f"[score] {name}: the scores of {', '.join(flat)} are equal for every checkpoint (saturated "
            "estimator): selected:<it> fails unless scoring.degenerate_fallback is set"
        )
    shaky = [s for s, p in picks(scores).items() if p.unstable and p.usable]
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


def _log_table(name: str, scores: dict) -> None:
    """One line per checkpoint: every selection term with its error bar, and P(T*) per selector."""
    terms = sorted({t for s in scores["selectors"].values() for t in (s["x"], s["y"]) if t})
    conf = scores.get("selection_confidence", {})
    for c in checkpoints(scores):
        vals = []
        for t in terms:
            est, key = t.split(".", 1)
            raw = c.raw.get(est, {})
            vals.append(f"{t} {_fmt(raw.get(key), raw.get(key + '_se'))}")
        p = " ".join(f"{s} {conf[s][str(c.epoch)]:.2f}" for s in conf)
        logger.info(f"[score] {name} e{c.epoch}: {'  '.join(vals)}  P(T*): {p}")


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


def _fmt(value: float | None, se: float | None) -> str:
    """``value±se`` with enough digits to show the error bar."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if se is None or not math.isfinite(se) or se <= 0:
        return f"{value:.4g}"
    digits = max(0, 1 - math.floor(math.log10(se)))
    return f"{value:.{digits}f}±{se:.{digits}f}"
