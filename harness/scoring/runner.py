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

import time
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from harness.config import config_hash, to_dict
from harness.store import CheckpointStore, Trajectory, atomic_write_json

from .base import CheckpointFeatures, Estimator, ScoringData, ScoringError, TensorConvSource, build_estimator
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

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- data


def build_scoring_data(cfg) -> ScoringData:
    """The fixed scoring sample of the experiment's validation split (never the test split)."""
    from harness.data import derive_seed
    from harness.experiment import load_splits

    splits = load_splits(cfg)
    val = splits.val
    n_val = len(val)
    n = min(int(cfg.scoring.num_samples), n_val)
    gen = torch.Generator().manual_seed(derive_seed("scoring-sample", int(cfg.scoring.seed)) % 2**63)
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
        "seed": int(cfg.scoring.seed),
        "data_seed": int(cfg.data.seed),
        "val_fraction": float(cfg.data.val_fraction),
        "data_num_samples": int(cfg.data.num_samples),
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


def _estimators(cfg) -> dict[str, Estimator]:
    names = list(cfg.scoring.estimators)
    if not names:
        raise ScoringError("scoring.estimators is empty; name at least one of the registered estimators")
    return {name: build_estimator(name, cfg.scoring) for name in names}


def _load_previous(store: CheckpointStore, name: str, log: Log) -> dict[int, dict]:
    if not scores_path(store, name).is_file():
        return {}
    try:
        return {c["epoch"]: c for c in read_scores(store, name)["checkpoints"]}
    except (ScoresError, KeyError, TypeError) as e:
        log(f"[score] {name}: ignoring the previous scores file ({e})")
        return {}


def score_trajectory(
    cfg,
    store: CheckpointStore,
    trajectory: Trajectory | str,
    data: ScoringData | None = None,
    *,
    shared: bool = True,
    log: Log = _print,
) -> dict:
    """Score one finished trajectory, write its scores file, return a summary.

    ``data``: a prebuilt scoring sample (``build_scoring_data(cfg)``) so that a long-lived scorer
    can hold it once for many trajectories. ``shared=False`` scores one checkpoint at a time (a
    separate data pass and decoder training per checkpoint; for the benchmark only).
    Summary: ``{selected: {selector: epoch}, selected_ensemble: {K: [epochs]}, timings, path}``.
    """
    from harness.training import resolve_device

    began = time.perf_counter()
    traj = store.trajectory(trajectory) if isinstance(trajectory, str) else trajectory
    manifest = traj.manifest()
    epochs = traj.finished_epochs()
    entries = {c["epoch"]: c for c in manifest["checkpoints"]}
    sc = cfg.scoring
    estimators = _estimators(cfg)
    data = data if data is not None else build_scoring_data(cfg)
    hashes = {name: settings_hash(est, data) for name, est in estimators.items()}
    previous = _load_previous(store, traj.name, log)

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
    need = sorted({e for es in todo.values() for e in es})
    reused = len(epochs) - len(need)
    device = resolve_device(cfg.device)
    log(
        f"[score] {traj.name}: {len(epochs)} checkpoints, {len(need)} to score ({reused} reused), "
        f"estimators {', '.join(estimators)}, {'shared pass' if shared else 'one checkpoint at a time'} on {device}"
    )

    timings: dict[str, Any] = {"load_s": 0.0, "features_s": 0.0, "estimators_s": {n: 0.0 for n in estimators}}
    groups = ([need] if need else []) if shared else [[e] for e in need]
    for group in groups:
        t0 = time.perf_counter()
        models = [traj.load_model(e, device) for e in group]
        timings["load_s"] += time.perf_counter() - t0
        conv_needed = any(estimators[n].needs_conv and set(todo[n]) & set(group) for n in estimators)
        keep_conv = False
        if conv_needed:
            per_ckpt = _conv_bytes(models[0], data, device)
            if per_ckpt is None:
                users = [n for n in estimators if estimators[n].needs_conv]
                raise ScoringError(
                    f"estimator(s) {users} need a last conv stage, but {manifest.get('arch')} (trajectory "
                    f"{traj.name}) has none; remove them from scoring.estimators for this teacher"
                )
            keep_conv = per_ckpt * len(group) <= sc.feature_cache_mb * 2**20
        t0 = time.perf_counter()
        feats, conv_cache = extract_features(models, group, data, sc.batch_size, device, keep_conv)
        timings["features_s"] += time.perf_counter() - t0
        for name, est in estimators.items():
            sub = [i for i, e in enumerate(group) if e in set(todo[name])]
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
                raw[group[i]][name] = {k: float(v) for k, v in res.items()}
        del models, feats, conv_cache
    for name in estimators:
        if todo[name]:
            log(f"[score] {traj.name} {name}: {timings['estimators_s'][name]:.2f}s for {len(todo[name])} checkpoints")

    scores = _assemble(cfg, traj.name, manifest, epochs, raw, estimators, hashes, data)
    timings["features_s"] = round(timings["features_s"], 4)
    timings["load_s"] = round(timings["load_s"], 4)
    timings["estimators_s"] = {k: round(v, 4) for k, v in timings["estimators_s"].items()}
    timings["total_s"] = round(time.perf_counter() - began, 4)
    timings["per_checkpoint_s"] = round(timings["total_s"] / len(need), 4) if need else 0.0
    timings.update(
        checkpoints_scored=len(need), checkpoints_reused=reused, shared_pass=shared,
        estimator_checkpoints_scored={n: len(todo[n]) for n in estimators},
        device=str(device), num_threads=torch.get_num_threads(),
    )
    scores["timings"] = timings
    path = scores_path(store, traj.name)
    atomic_write_json(path, scores)

    picks = " ".join(f"{s}=e{v['epoch']}" for s, v in scores["selected"].items())
    flat = [s for s, v in scores["selected"].items() if v["degenerate"]]
    if flat:
        log(f"[score] {traj.name}: warning: the scores of {', '.join(flat)} are equal for every checkpoint "
            "(saturated estimator), so their pick is just the earliest epoch")
    ens = scores["selected_ensemble"]
    ens_txt = " ".join(f"K={k}:{v['epochs']}" for k, v in ens["by_k"].items())
    log(f"[score] {traj.name}: selected {picks or '-'}; ensembles ({ens['selector']}) {ens_txt or '-'}; "
        f"{timings['total_s']:.1f}s -> {path}")
    return {
        "selected": {s: v["epoch"] for s, v in scores["selected"].items()},
        "selected_ensemble": {int(k): v["epochs"] for k, v in ens["by_k"].items()},
        "timings": timings,
        "path": str(path),
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
    entries = {c["epoch"]: c for c in manifest["checkpoints"]}
    rows = [raw[e] for e in epochs]
    selectors = available_selectors(estimators)
    normalized = {
        s: selector_scores(rows, SELECTORS[s], sc.normalization, sc.x_weight, sc.y_weight) for s in selectors
    }
    checkpoints = []
    for i, e in enumerate(epochs):
        checkpoints.append(
            {
                "epoch": e,
                "sha256": entries[e]["sha256"],
                "val_acc": entries[e].get("val_acc"),
                "raw": raw[e],
                "hashes": dict(hashes),
                "normalized": {s: {k: v[i] for k, v in normalized[s].items()} for s in selectors},
            }
        )
    selected = {}
    for s in selectors:
        e = select_single(epochs, normalized[s]["score"])
        selected[s] = {
            "epoch": e,
            "score": normalized[s]["score"][epochs.index(e)],
            "degenerate": is_degenerate(normalized[s]["score"]),
        }
    ens_selector = sc.ensemble_selector if sc.ensemble_selector in selectors else (selectors[0] if selectors else None)
    total_epochs = int(manifest.get("epochs") or max(epochs))
    min_gap = sc.min_gap_fraction * total_epochs
    by_k = {}
    if ens_selector is not None:
        values = normalized[ens_selector]["score"]
        for k in sc.ensemble_sizes:
            if k > len(epochs):
                continue
            members, gap = select_ensemble(epochs, values, k, min_gap)
            by_k[str(k)] = {
                "epochs": members,
                "gap_epochs": gap,
                "score_sum": sum(values[epochs.index(m)] for m in members),
            }
    return {
        "schema_version": SCORES_SCHEMA_VERSION,
        "trajectory": name,
        "arch": manifest.get("arch"),
        "dataset": manifest.get("dataset"),
        "seed": manifest.get("seed"),
        "epochs": total_epochs,
        "data": data.info,
        "estimators": {
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
        },
        "selectors": {s: SELECTORS[s].to_json() for s in selectors},
        "normalization": sc.normalization,
        "weights": {"x": sc.x_weight, "y": sc.y_weight},
        "checkpoints": checkpoints,
        "selected": selected,
        "selected_ensemble": {
            "selector": ens_selector,
            "min_gap_fraction": sc.min_gap_fraction,
            "min_gap_epochs": min_gap,
            "by_k": by_k,
        },
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def run_scoring(cfg, log: Log = _print) -> dict:
    """Score every finished trajectory of the config's store; returns ``{trajectory: summary}``."""
    from harness.experiment import open_store, set_threads

    set_threads(cfg)
    store = open_store(cfg)
    trajectories = store.trajectories()
    finished = [t for t in trajectories if t.is_finished()]
    for t in trajectories:
        if not t.is_finished():
            log(f"[score] {t.name}: not finished; skipping (run `ckd teachers CONFIG` to finish it)")
    if not finished:
        log(f"[score] no finished trajectories in {store.trajectories_dir}; run `ckd teachers CONFIG` first")
        return {}
    data = build_scoring_data(cfg)
    log(f"[score] scoring sample: {len(data)} of {data.info['val_size']} validation samples of {data.info['dataset']}")
    summary = {}
    for t in finished:
        dataset = t.manifest().get("dataset")
        if dataset not in (None, cfg.data.name):
            log(f"[score] {t.name}: trained on {dataset}, not data.name={cfg.data.name}; skipping")
            continue
        summary[t.name] = score_trajectory(cfg, store, t, data, log=log)
    return summary


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
