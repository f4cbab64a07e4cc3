"""The dataset registry and ``build_splits``, the one entry point the rest of the harness uses.

A dataset is registered as a builder function::

    @register_dataset("name")
    def build(*, root, storage_dir, seed, val_fraction, augment, download, opt_a=1, ...) -> DataSplits

Its own options are the keyword parameters after the common six; ``build_splits`` checks the
caller's ``**options`` against them first, so a misspelt option in a config fails loudly with
the list of options that dataset does take.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

from harness.registry import Registry

from .splits import DataSplits, preserve_global_rng

logger = logging.getLogger(__name__)

DatasetBuilder = Callable[..., DataSplits]

DATASETS: Registry[DatasetBuilder] = Registry("dataset")

COMMON_ARGS = ("root", "storage_dir", "seed", "val_fraction", "augment", "download")


def register_dataset(name: str) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator: register a dataset builder under ``name`` (see the module docstring)."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    """Names of every registered dataset, sorted."""
    return DATASETS.names()


def dataset_options(name: str) -> dict[str, Any]:
    """The dataset-specific options of ``name`` with their defaults (for docs and validation)."""
    params = inspect.signature(DATASETS.get(name)).parameters
    return {
        k: (None if p.default is inspect.Parameter.empty else p.default)
        for k, p in params.items()
        if k not in COMMON_ARGS and p.kind is not inspect.Parameter.VAR_KEYWORD
    }


def build_splits(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    storage_dir: str | os.PathLike[str],
    seed: int,
    val_fraction: float = 0.1,
    augment: bool = True,
    download: bool = False,
    **options: Any,
) -> DataSplits:
    """Build train / val / test (+ un-augmented train_eval) for dataset ``name``.

    ``root`` is where the raw files live (unused by generated/bundled sets), ``storage_dir`` a
    cache directory the harness owns, ``seed`` fixes the val carving (and generation where the
    data is generated). The result is deterministic for a given seed; val is carved from the
    training set and the three splits are pairwise disjoint. The caller's global RNG states
    (``random``, ``numpy.random``, torch CPU) are the same afterwards as before.
    """
    builder = DATASETS.get(name)  # KeyError listing the known names
    _check_request(name, options, val_fraction)
    with preserve_global_rng():  # no builder (or library it imports) may shift the caller's RNG
        splits = builder(
            root=None if root is None else os.fspath(root),
            storage_dir=os.fspath(storage_dir),
            seed=int(seed),
            val_fraction=float(val_fraction),
            augment=bool(augment),
            download=bool(download),
            **options,
        )
    _record_info(splits, name, int(seed), float(val_fraction))
    return splits


def _check_request(name: str, options: dict[str, Any], val_fraction: float) -> None:
    """Raise TypeError for an option ``name`` does not take, ValueError for a bad ``val_fraction``."""
    allowed = dataset_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(sorted(allowed)) or "no options"
        raise TypeError(f"dataset {name!r} does not take option(s) {', '.join(map(repr, unknown))}; it takes: {takes}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")


def _record_info(splits: DataSplits, name: str, seed: int, val_fraction: float) -> None:
    """Fill in ``splits.info``: name, seed and val_fraction (unless the builder set them), sizes."""
    splits.info.setdefault("name", name)
    splits.info.setdefault("seed", seed)
    splits.info.setdefault("val_fraction", val_fraction)
    splits.info["sizes"] = splits.sizes()
    logger.debug("[data] %s splits (seed %d): %s", name, seed, splits.info["sizes"])
