"""MNIST-1D, the embedded default: generated locally, cached, held in memory as tensors.

The data come from ``mnist1d.data.make_dataset`` (never ``get_dataset``, which downloads).
Generation seeds the global ``random``/``numpy`` RNGs, so it runs inside a save/restore scope:
the caller's RNG state is the same after ``build_splits`` as before. The generated arrays are
cached under ``storage_dir`` as ``mnist1d-n{num_samples}-s{seed}.npz`` plus a ``.json`` meta
file (generator version, sha256), both written atomically; a cache whose meta or hash does not
match is regenerated.

Defaults follow DESIGN.md section 6: 16,000 samples, the first 25% (4,000) as the training pool
and the remaining 12,000 as test (``train_split=0.25``; mnist1d's own default is 0.8). Val is
carved (stratified) from the training pool; inputs are standardized with the scalar mean/std
of the remaining train samples only. Input shape ``(1, 40)``, 10 classes, no augmentation.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.fileio import JSON_MAX_BYTES, atomic_write, atomic_write_json, read_regular_text, sha256_file

from .catalog import register_dataset
from .splits import DataSplits, TensorSplit, carve_val, preserve_global_rng

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
NUM_CLASSES = 10
SEQ_LEN = 40


def _generator_version() -> str:
    """The installed ``mnist1d`` package version (part of the cache key), or ``"missing"``."""
    try:
        return importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - dependency missing
        return "missing"


def _cache_key(num_samples: int, seed: int) -> dict[str, Any]:
    """What a cache file must have been generated with to be reused."""
    return {"format": CACHE_FORMAT, "num_samples": num_samples, "seed": seed, "mnist1d": _generator_version()}


def generate_mnist1d(num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """All ``num_samples`` samples from ``make_dataset`` in its order (train part first).

    Returns ``(x, y, args)``: ``x`` float64 ``(N, 40)``, ``y`` int64 ``(N,)`` and the generator
    arguments used. The global ``random``, ``numpy`` and torch CPU RNG states are restored.
    """
    from mnist1d.data import get_dataset_args, make_dataset  # lazy: slow import, cache hits skip it

    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.seed = int(seed)
    with preserve_global_rng():  # make_dataset reseeds the global random / numpy RNGs
        data = make_dataset(args)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float64)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    # train_split is applied by the builder at load time, so one cache serves every split
    used = {k: v for k, v in vars(args).items() if k not in ("url", "train_split")}
    return x, y, used


def cache_paths(storage_dir: str | Path, num_samples: int, seed: int) -> tuple[Path, Path]:
    """``(npz, json)`` paths of the cached arrays and their meta file under ``storage_dir``."""
    stem = f"mnist1d-n{num_samples}-s{seed}"
    storage = Path(storage_dir)
    return storage / f"{stem}.npz", storage / f"{stem}.json"


def read_cache(
    npz_path: Path, meta_path: Path, key: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """``(x, y, meta)`` from a cache whose key, sha256 and shapes all match, else None."""
    try:
        meta = json.loads(read_regular_text(meta_path, JSON_MAX_BYTES, "data cache metadata"))
        if meta.get("key") == key and meta.get("sha256") == sha256_file(npz_path):
            with np.load(npz_path) as f:
                x, y = f["x"], f["y"]
            if x.shape == (meta["n"], SEQ_LEN) and y.shape == (meta["n"],):
                return x, y, meta
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        pass  # missing or damaged cache: the caller regenerates
    return None


def write_cache(
    npz_path: Path, meta_path: Path, key: dict[str, Any], x: np.ndarray, y: np.ndarray, args: dict[str, Any]
) -> dict[str, Any]:
    """Write the arrays, then their meta file (key, size, sha256, generator args); returns the meta."""

    def write_npz(fh: Any) -> None:
        np.savez(fh, x=x, y=y)

    atomic_write(npz_path, write_npz)
    meta = {"key": key, "n": int(len(y)), "sha256": sha256_file(npz_path), "generator_args": args}
    atomic_write_json(meta_path, meta)
    return meta


def load_or_generate(
    storage_dir: str | Path, num_samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The generated arrays, from the cache when it is valid, else generated and cached.

    Returns ``(x, y, meta)``; ``meta["cache_hit"]`` says which happened.
    """
    npz_path, meta_path = cache_paths(storage_dir, num_samples, seed)
    key = _cache_key(num_samples, seed)
    cached = read_cache(npz_path, meta_path, key)
    if cached is not None:
        x, y, meta = cached
        logger.info("[data] MNIST-1D from cache %s", npz_path)
        return x, y, {**meta, "cache_hit": True, "path": str(npz_path)}
    if npz_path.exists() or meta_path.exists():
        logger.info("[data] MNIST-1D cache %s is stale or damaged; regenerating it", npz_path)
    began = time.perf_counter()
    x, y, args = generate_mnist1d(num_samples, seed)
    meta = write_cache(npz_path, meta_path, key, x, y, args)
    logger.info(
        "[data] generating MNIST-1D (%d samples, seed %d) ... cached at %s (%.1f s)",
        num_samples,
        seed,
        npz_path,
        time.perf_counter() - began,
    )
    return x, y, {**meta, "cache_hit": False, "path": str(npz_path)}


def _check_options(num_samples: int, train_split: float) -> None:
    """Raise ValueError for too few samples (< 10 per class) or a train_split outside (0, 1)."""
    if num_samples < 10 * NUM_CLASSES:
        raise ValueError(f"mnist1d num_samples must be at least {10 * NUM_CLASSES}, got {num_samples}")
    if not 0.0 < float(train_split) < 1.0:
        raise ValueError(f"mnist1d train_split must be in (0, 1), got {train_split}")


def _standardized(x: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """``(x - mean) / std`` as a float32 tensor with a channel dim: ``(N, 40)`` -> ``(N, 1, 40)``."""
    return torch.from_numpy(((x - mean) / std).astype(np.float32)).unsqueeze(1)


def _split_info(mean: float, std: float, n: int, train_split: float, meta: dict[str, Any]) -> dict[str, Any]:
    """The ``DataSplits.info`` record: normalization, sizes and where the data came from."""
    return {
        "mean": [mean],
        "std": [std],
        "num_samples": n,
        "train_split": float(train_split),
        "cache_path": meta["path"],
        "cache_hit": meta["cache_hit"],
        "generator": f"mnist1d {meta['key']['mnist1d']} make_dataset",
    }


@register_dataset("mnist1d")
def build_mnist1d(
    *,
    root: str | None,
    storage_dir: str,
    seed: int,
    val_fraction: float,
    augment: bool,
    download: bool,
    num_samples: int = 16000,
    train_split: float = 0.25,
) -> DataSplits:
    """MNIST-1D splits (module doc). ``root``, ``augment`` and ``download`` do not apply."""
    num_samples = int(num_samples)
    _check_options(num_samples, train_split)
    x_all, y_all, meta = load_or_generate(storage_dir, num_samples, seed)
    split_ix = int(len(y_all) * float(train_split))  # same rule as make_dataset's own split
    x_pool, y_pool = x_all[:split_ix], y_all[:split_ix]
    x_test, y_test = x_all[split_ix:], y_all[split_ix:]
    tr, va = carve_val(y_pool, val_fraction, seed)
    mean = float(x_pool[tr].mean())
    std = float(x_pool[tr].std())
    pool = TensorSplit(_standardized(x_pool, mean, std), torch.from_numpy(y_pool), torch.arange(split_ix))
    train = pool.subset(tr)
    test = TensorSplit(_standardized(x_test, mean, std), torch.from_numpy(y_test), torch.arange(split_ix, len(y_all)))
    return DataSplits(
        train=train,
        val=pool.subset(va),
        test=test,
        num_classes=NUM_CLASSES,
        input_shape=(1, SEQ_LEN),
        train_eval=train,
        augmented=False,
        info=_split_info(mean, std, int(len(y_all)), train_split, meta),
    )
