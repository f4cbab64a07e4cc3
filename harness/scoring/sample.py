"""The scoring sample: the rows every checkpoint of a trajectory is scored on.

``scoring.num_samples`` rows of the *validation* split (all of it if it is smaller), drawn with
``scoring.seed``, the same for every checkpoint, cut into ``scoring.folds`` random folds (the
replicates behind every error bar); when an estimator fits on them (``ridge``, ``recon``), also a
pool of rows of the (unaugmented) *training* split, as large as the largest need of a configured
estimator (``ridge``: ``scoring.ridge.train_samples x seeds``; ``recon``: ``scoring.recon.train_samples x
seeds``, each decoder seed drawing its own rows), capped by the split. Every such estimator draws
its rows from the pool with ``scoring.seed``; the pool's size is part of their settings hash
(``plan.settings_hash``). The test split is never used.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from harness.config import ExperimentConfig, to_dict

from .base import ScoringData


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


def train_pool_size(cfg: ExperimentConfig) -> int:
    """Training rows the configured estimators need (0: none fits on training rows), uncapped."""
    from .base import ESTIMATORS

    sc, need = cfg.scoring, 0
    for name in sc.estimators:
        if not ESTIMATORS.get(name).needs_train_rows:
            continue
        if name == "ridge":  # each decoder draws its own rows, as recon's seeds
            need = max(need, sc.ridge.train_samples * sc.ridge.seeds)
        else:  # recon's pool: each decoder seed draws its own rows
            need = max(need, sc.recon.train_samples * sc.recon.seeds)
    return int(need)


def build_scoring_data(cfg: ExperimentConfig) -> ScoringData:
    """The fixed scoring sample of the validation split (never the test split), its folds, and,
    when an estimator fits on them (``ridge``, ``recon``), rows of the training split (unaugmented)."""
    from harness.experiment import load_splits

    sc = cfg.scoring
    splits = load_splits(cfg)
    val = splits.val
    n_val = len(val)
    n = min(sc.num_samples, n_val)
    x, y = _rows_of(val, _draw(n_val, n, "scoring-sample", sc.seed))
    train_x, n_train, pool = None, len(splits.train_eval), train_pool_size(cfg)
    if pool:
        m = min(pool, n_train)
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
