"""scikit-learn's bundled 8x8 ``digits`` (1,797 images, no network): a tiny image set for tests.

Images become ``(1, 8, 8)`` floats in [0, 1] (pixel / 16). A seeded, stratified 80/20 split
gives train pool and test; val is carved from the train pool. No augmentation.
"""

from __future__ import annotations

import numpy as np
import torch

from .catalog import register_dataset
from .splits import DataSplits, TensorSplit, carve_val, stratified_split


@register_dataset("digits")
def build_digits(
    *,
    root: str | None,
    storage_dir: str,
    seed: int,
    val_fraction: float,
    augment: bool,
    download: bool,
    test_fraction: float = 0.2,
) -> DataSplits:
    """Digits splits (module doc). ``root``, ``storage_dir``, ``augment``, ``download`` do not apply."""
    from sklearn.datasets import load_digits  # lazy: sklearn is only needed for this data set

    bunch = load_digits()
    x_all = torch.from_numpy((bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8))
    y_all = np.asarray(bunch.target, dtype=np.int64)
    pool_idx, test_idx = stratified_split(y_all, test_fraction, seed, salt="test")
    tr, va = carve_val(y_all[pool_idx], val_fraction, seed)
    everything = TensorSplit(x_all, torch.from_numpy(y_all), torch.arange(len(y_all)))
    train = everything.subset(pool_idx[tr])
    return DataSplits(
        train=train,
        val=everything.subset(pool_idx[va]),
        test=everything.subset(test_idx),
        num_classes=10,
        input_shape=(1, 8, 8),
        train_eval=train,
        augmented=False,
        info={"mean": [0.0], "std": [1.0], "test_fraction": float(test_fraction)},
    )
