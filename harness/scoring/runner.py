"""``ckd score``: score every checkpoint of every finished trajectory, select, write the scores file.

Per trajectory (``score_trajectory``):

1. the scoring sample: ``scoring.num_samples`` rows of the *validation* split (all of it if it is
   smaller), drawn with ``scoring.seed``, the same for every checkpoint (``build_scoring_data``);
2. one **shared pass**: all checkpoints still to score are loaded at once, and each batch of the
   sample is moved to the device once and fed to every checkpoint, collecting logits, penultimate
   features and (when ``recon`` runs and they fit in ``scoring.feature_cache_mb``) the last conv
   stage; otherwise the conv stage is recomputed batch by batch, still one batch for all;
3. each estimator scores all those checkpoints at once (``recon`` trains their decoders side by
   side, see ``recon.py``);
4. normalization and selection (``selection.py``) over *all* checkpoints, and an atomic write of
   ``<storage>/<experiment>/scores/<trajectory>.json``.

Re-running reuses every (checkpoint, estimator) result whose checkpoint sha256 and settings hash
(estimator hyperparameters + scoring sample: data set, split, size, seed) are unchanged.
``scores_fresh(cfg, name)`` answers, without loading any model, whether a trajectory's scores
file already matches the config (so a scheduler need not start scoring it at all).

Scores file (``schema_version`` 1)::

    trajectory, arch, dataset, seed, epochs          from the manifest
    data          {dataset, split: "val", val_size, num_samples, seed, ...}   the scoring sample
    estimators    {name: {params, hash, x_key, y_key, plane_x_key, plane_y_key, description}}
    selectors     {name: {x: "est.key", y: "est.key", estimators, description}}   computed ones
    normalization "minmax";  weights {x, y}
    checkpoints   [{epoch, sha256, val_acc,
                    raw: {estimator: {key: value}},          e.g. recon: {loss, neg_loss, mse, i_x, ...}
                    hashes: {estimator: settings hash},
                    normalized: {selector: {x, y, score}}}]    (x / y only where the selector has them)
    selected      {selector: {epoch, score, degenerate}}        T* per selector
    selected_ensemble {selector, min_gap_fraction, min_gap_epochs,
                       by_k: {"K": {epochs: [...], gap_epochs, score_sum}}}
    timings       {total_s, load_s, features_s, estimators_s: {name: s}, per_checkpoint_s,
                   checkpoints_scored, checkpoints_reused, estimator_checkpoints_scored: {name: n},
                   shared_pass, device, num_threads}            (of the latest run)
    written_at    ISO time
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from harness.config import ExperimentConfig, config_hash, to_dict
from harness.store import CheckpointStore, Trajectory, atomic_write_json

from .base import (
    CheckpointFeatures,
    Estimator,
    ScoringData,
    ScoringError,
    TensorConvSource,
    build_estimator,
)
from .selection import (
    SCORES_SCHEMA_VERSION,
    SELECTORS,
    ScoresError,
    available_selectors,
    is_degenerate,
    read_scores,
    scores_path,
    select_ensemble,
    select_single,
    selector_scores,
)

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- data


def build_scoring_data(cfg: ExperimentConfig) -> ScoringData:
    """The fixed scoring sample of the experiment's validation split (never the test split)."""
    from harness.data import derive_seed
    from harness.experiment import load_splits

    splits = load_splits(cfg)
    val = splits.val
    n_val = len(val)
    n = min(cfg.scoring.num_samples, n_val)
    gen = torch.Generator().manual_seed(derive_seed("scoring-sample", cfg.scoring.seed) % 2**63)
    rows = torch.randperm(n_val, generator=gen)[:n].sort().values
    if hasattr(val, "x") and hasattr(val, "y"):
        x, y = val.x[rows.to(val.x.device)].cpu(), val.y[rows.to(val.y.device)].cpu()
    else:
        items = [val[int(i)] for i in rows]
        x = torch.stack([torch.as_tensor(a) for a, _ in items]).float()
        y = torch.as_tensor([int(b) for _, b in items], dtype=torch.long)
    info = {
        "dataset": cfg.data.name,
        "split": "val",
        "val_size": n_val,
        "num_samples": n,
        "seed": cfg.scoring.seed,
        "data_seed": cfg.data.seed,
        "val_fraction": cfg.data.val_fraction,
        "data_num_samples": cfg.data.num_samples,
        "data_options": to_dict(cfg.data.options) if hasattr(cfg.data, "options") else {},
    }
    return ScoringData(x=x, y=y, num_classes=int(splits.num_classes), info=info)


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


@torch.no_grad()
def extract_features(
    models: Sequence[nn.Module],
    epochs: Sequence[int],
    data: ScoringData,
    batch_size: int,
    device: torch.device,
    keep_conv: bool,
) -> tuple[list[CheckpointFeatures], Tensor | None]:
    """One pass over the scoring sample: every batch goes to the device once, then to every model.

    Returns per-checkpoint logits/penultimate (CPU) and, with ``keep_conv``, the conv stages as
    one ``[K, N, C, *spatial]`` tensor on ``device``.
    """
    logits: list[list[Tensor]] = [[] for _ in models]
    pen: list[list[Tensor]] = [[] for _ in models]
    conv: list[list[Tensor]] = [[] for _ in models]
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
    """Bytes of one checkpoint's conv stage on the whole sample (None: the model has none)."""
    with torch.no_grad():
        conv = model.forward_features(data.x[:2].to(device)).conv
    return None if conv is None else 4 * conv[0].numel() * len(data)


# ----------------------------------------------------------------------------- scoring


def settings_hash(estimator: Estimator, data: ScoringData) -> str:
    """Cache key of an estimator's results: its hyperparameters + the scoring sample's identity."""
    return config_hash({"estimator": estimator.name, "params": estimator.params(), "data": data.info})


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

    @property
    def need(self) -> list[int]:
        """Every epoch that at least one estimator must score, ascending."""
        return sorted({e for es in self.todo.values() for e in es})


def _plan(cfg: ExperimentConfig, store: CheckpointStore, trajectory: Trajectory | str, data: ScoringData | None) -> _Plan:
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
    todo: dict[str, list[int]] = {name: [] for name in estimators}
    for e in epochs:
        old = previous.get(e)
        same_ckpt = old is not None and old.get("sha256") == entries[e]["sha256"]
        for name in estimators:
            if same_ckpt and old.get("hashes", {}).get(name) == hashes[name] and name in old.get("raw", {}):
                raw[e][name] = old["raw"][name]
            else:
                todo[name].append(e)
    return _Plan(traj, manifest, epochs, estimators, hashes, data, raw, todo)


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


def _score_group(cfg: ExperimentConfig, plan: _Plan, group: list[int], device: torch.device, timings: dict[str, Any]) -> None:
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
        source = None
        if est.needs_conv:
            source = (
                TensorConvSource(conv_cache[sub]) if conv_cache is not None
                else ModelConvSource([models[i] for i in sub], data.x, device)
            )
        t0 = time.perf_counter()
        results = est.score([feats[i] for i in sub], data, source, device)
        timings["estimators_s"][name] += time.perf_counter() - t0
        for i, res in zip(sub, results):
            plan.raw[group[i]][name] = {k: float(v) for k, v in res.items()}


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
        checkpoints_scored=len(need), checkpoints_reused=len(plan.epochs) - len(need), shared_pass=shared,
        estimator_checkpoints_scored={n: len(plan.todo[n]) for n in plan.estimators},
        device=str(device), num_threads=torch.get_num_threads(),
    )
    return timings


def _log_selection(name: str, scores: dict, path: Path) -> None:
    """Log the picks (and warn about degenerate ones) of a freshly written scores file."""
    picks = " ".join(f"{s}=e{v['epoch']}" for s, v in scores["selected"].items())
    flat = [s for s, v in scores["selected"].items() if v["degenerate"]]
    if flat:
        logger.warning(f"[score] {name}: the scores of {', '.join(flat)} are equal for every checkpoint "
                       "(saturated estimator), so their pick is just the earliest epoch")
    ens = scores["selected_ensemble"]
    ens_txt = " ".join(f"K={k}:{v['epochs']}" for k, v in ens["by_k"].items())
    logger.info(f"[score] {name}: selected {picks or '-'}; ensembles ({ens['selector']}) {ens_txt or '-'}; "
                f"{scores['timings']['total_s']:.1f}s -> {path}")


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
    Summary: ``{selected: {selector: epoch}, selected_ensemble: {K: [epochs]}, timings, path}``.
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

    scores = _assemble(cfg, name, plan.manifest, plan.epochs, plan.raw, plan.estimators, plan.hashes, plan.data)
    scores["timings"] = _finish_timings(timings, plan, began, shared, device)
    path = scores_path(store, name)
    atomic_write_json(path, scores)
    _log_selection(name, scores, path)
    return {
        "selected": {s: v["epoch"] for s, v in scores["selected"].items()},
        "selected_ensemble": {int(k): v["epochs"] for k, v in scores["selected_ensemble"]["by_k"].items()},
        "timings": timings,
        "path": str(path),
    }


def _checkpoint_rows(
    manifest: dict,
    epochs: list[int],
    raw: dict[int, dict[str, dict[str, float]]],
    hashes: dict[str, str],
    normalized: dict[str, dict[str, list[float]]],
) -> list[dict]:
    """The scores file's ``checkpoints``: per epoch its identity, raw values and normalized scores."""
    entries = {c["epoch"]: c for c in manifest["checkpoints"]}
    return [
        {
            "epoch": e,
            "sha256": entries[e]["sha256"],
            "val_acc": entries[e].get("val_acc"),
            "raw": raw[e],
            "hashes": dict(hashes),
            "normalized": {s: {k: v[i] for k, v in normalized[s].items()} for s in normalized},
        }
        for i, e in enumerate(epochs)
    ]


def _single_picks(epochs: list[int], normalized: dict[str, dict[str, list[float]]]) -> dict[str, dict]:
    """The scores file's ``selected``: T* per selector, its score, and whether all scores tie."""
    selected = {}
    for s, norm in normalized.items():
        e = select_single(epochs, norm["score"])
        selected[s] = {"epoch": e, "score": norm["score"][epochs.index(e)], "degenerate": is_degenerate(norm["score"])}
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


def _assemble(
    cfg,
    name: str,
    manifest: dict,
    epochs: list[int],
    raw: dict[int, dict[str, dict[str, float]]],
    estimators: dict[str, Estimator],
    hashes: dict[str, str],
    data: ScoringData,
) -> dict:
    """Normalize, select and lay out the scores file (see module doc)."""
    sc = cfg.scoring
    rows = [raw[e] for e in epochs]
    selectors = available_selectors(estimators)
    normalized = {
        s: selector_scores(rows, SELECTORS[s], sc.normalization, sc.x_weight, sc.y_weight) for s in selectors
    }
    ens_selector = sc.ensemble_selector if sc.ensemble_selector in selectors else (selectors[0] if selectors else None)
    total_epochs = int(manifest.get("epochs") or max(epochs))
    min_gap = sc.min_gap_fraction * total_epochs
    values = normalized[ens_selector]["score"] if ens_selector is not None else None
    return {
        "schema_version": SCORES_SCHEMA_VERSION,
        "trajectory": name,
        "arch": manifest.get("arch"),
        "dataset": manifest.get("dataset"),
        "seed": manifest.get("seed"),
        "epochs": total_epochs,
        "data": data.info,
        "estimators": _estimator_info(estimators, hashes),
        "selectors": {s: SELECTORS[s].to_json() for s in selectors},
        "normalization": sc.normalization,
        "weights": {"x": sc.x_weight, "y": sc.y_weight},
        "checkpoints": _checkpoint_rows(manifest, epochs, raw, hashes, normalized),
        "selected": _single_picks(epochs, normalized),
        "selected_ensemble": {
            "selector": ens_selector,
            "min_gap_fraction": sc.min_gap_fraction,
            "min_gap_epochs": min_gap,
            "by_k": _ensemble_picks(sc, epochs, values, min_gap),
        },
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


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

        store = open_store(cfg)
        scores = read_scores(store, name)
        traj = store.trajectory(name)
        return (
            _checkpoints_match(traj, scores)
            and _estimators_match(cfg.scoring, scores)
            and not any(found != expected for found, expected in _expected_settings(cfg, scores).values())
            and _ensemble_selector_matches(cfg.scoring, scores)
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
    terms, e.g. -BCE and accuracy), ``x_norm, y_norm, score`` and ``val_acc``.
    """
    if trajectory_name is not None:
        names = [trajectory_name]
    else:
        names = sorted(p.stem for p in store.scores_dir.glob("*.json")) if store.scores_dir.is_dir() else []
    rows = []
    for name in names:
        scores = read_scores(store, name)
        for sel_name in scores["selectors"]:
            sel = SELECTORS[sel_name]
            for c in scores["checkpoints"]:
                row: dict[str, Any] = {"trajectory": name, "epoch": c["epoch"], "estimator": sel_name}
                norm = c["normalized"][sel_name]
                for axis, term in (("x", sel.x), ("y", sel.y)):
                    if term is None:
                        row.update({f"{axis}_estimator": None, f"i_{axis}": None, f"{axis}_value": None, f"{axis}_norm": None})
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
                        }
                    )
                row["score"] = norm["score"]
                row["val_acc"] = c.get("val_acc")
                rows.append(row)
    return rows
