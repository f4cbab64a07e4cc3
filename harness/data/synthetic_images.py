"""``synthetic_cifar10``: CIFAR-shaped images generated from the seed, no files, no network.

Each of the 10 classes is a sinusoidal stripe pattern with its own orientation and frequency
plus a colour tint; every image draws a random phase (the stripes shift), contrast and
brightness, and Gaussian pixel noise, so a CNN learns the classes but not instantly. Images
are uint8 ``[N, 32, 32, 3]`` in a pool shaped like torchvision's CIFAR datasets (``.data``,
``.targets``, items are ``(PIL image, label)``), so the splits are built exactly as the real
CIFAR builders build theirs: the DataLoader path with the torchvision transforms (4-px pad,
random crop, flip), and ``to_device_images`` (``data.device_data=on``) for the device path.
That makes it the data set on which the two paths are compared, in tests and benchmarks.

``num_samples`` is the training pool (train + val, val carved by ``val_fraction``),
``num_test`` the separate test set. Normalization uses the pool's own per-channel mean/std.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from .catalog import register_dataset
from .splits import DataSplits, TransformView, derive_seed
from .torchvision_sets import carve_views, crop_flip_transforms

logger = logging.getLogger(__name__)

NUM_CLASSES = 10
SIZE = 32
CHUNK = 2048  # images rendered at a time (bounded memory; fixed, so the draws are too)


class SyntheticImagePool(Dataset):
    """uint8 images ``data`` ``[N, H, W, C]`` and int ``targets``; items ``(PIL image, label)`` as CIFAR's."""

    def __init__(self, data: np.ndarray, targets: np.ndarray) -> None:
        self.data = data
        self.targets = [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image  # lazy: PIL comes with torchvision, needed only on this path

        return Image.fromarray(self.data[i]), self.targets[i]


def _class_patterns(seed: int) -> dict[str, np.ndarray]:
    """Per-class stripe angle (rad), frequency (cycles per image) and RGB tint, from ``seed``."""
    rng = np.random.default_rng(derive_seed("synthetic_cifar10", seed, "classes"))
    angles = np.pi * np.arange(NUM_CLASSES) / NUM_CLASSES + rng.uniform(-0.1, 0.1, NUM_CLASSES)
    return {
        "angle": angles,
        "freq": rng.uniform(1.5, 4.5, NUM_CLASSES),
        "tint": rng.uniform(-40.0, 40.0, (NUM_CLASSES, 3)),
    }


def _render(labels: np.ndarray, rng: np.random.Generator, cls: dict[str, np.ndarray]) -> np.ndarray:
    """uint8 ``[n, 32, 32, 3]`` images of ``labels`` (random phase, contrast, brightness, noise)."""
    n = labels.shape[0]
    grid = np.arange(SIZE, dtype=np.float32) / SIZE
    yy, xx = grid[:, None], grid[None, :]
    angle = cls["angle"][labels, None, None].astype(np.float32)
    freq = cls["freq"][labels, None, None].astype(np.float32)
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    wave = np.sin(np.float32(2 * np.pi) * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    contrast = rng.uniform(35.0, 75.0, (n, 1, 1, 1)).astype(np.float32)
    offset = rng.uniform(-25.0, 25.0, (n, 1, 1, 1)) + 128.0 + cls["tint"][labels, None, None, :]
    img = contrast * wave[..., None] + offset.astype(np.float32)
    img += np.float32(30.0) * rng.standard_normal((n, SIZE, SIZE, 3), dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def generate_images(num: int, seed: int, part: str) -> tuple[np.ndarray, np.ndarray]:
    """``num`` balanced, shuffled images and labels of ``part`` ("train"/"test"), from ``seed`` only."""
    rng = np.random.default_rng(derive_seed("synthetic_cifar10", seed, part))
    labels = rng.permutation(np.arange(num) % NUM_CLASSES).astype(np.int64)
    cls = _class_patterns(seed)
    chunks = [_render(labels[i : i + CHUNK], rng, cls) for i in range(0, num, CHUNK)]
    data = np.concatenate(chunks) if chunks else np.zeros((0, SIZE, SIZE, 3), np.uint8)
    return data, labels


def channel_stats(data: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 ``[N, H, W, C]`` images in [0, 1] units (4 decimals).

    Exact, from each channel's 256-bin histogram (no float copy of the images)."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(data.shape[-1]):
        counts = np.bincount(data[..., c].ravel(), minlength=256).astype(np.float64)
        p = counts / counts.sum()
        mean = float(p @ levels)
        means.append(round(mean, 4))
        stds.append(round(float(np.sqrt(p @ (levels - mean) ** 2)), 4))
    return means, stds


@register_dataset("synthetic_cifar10")
def build_synthetic_cifar10(
    *,
    root: str | None,
    storage_dir: str,
    seed: int,
    val_fraction: float,
    augment: bool,
    download: bool,
    num_samples: int = 5000,
    num_test: int = 1000,
) -> DataSplits:
    """Generated CIFAR-shaped splits (module doc); ``root``, ``storage_dir``, ``download`` do not apply."""
    if int(num_samples) < NUM_CLASSES or int(num_test) < 1:
        raise ValueError(
            f"synthetic_cifar10 needs num_samples >= {NUM_CLASSES} and num_test >= 1, got {num_samples} and {num_test}"
        )
    train_pool = SyntheticImagePool(*generate_images(int(num_samples), seed, "train"))
    test_pool = SyntheticImagePool(*generate_images(int(num_test), seed, "test"))
    mean, std = channel_stats(train_pool.data)
    plain, aug = crop_flip_transforms(mean, std, augment)
    train, val, train_eval = carve_views(train_pool, train_pool.targets, plain, aug, val_fraction, seed)
    logger.debug(
        "[data] synthetic_cifar10: %d train-pool and %d test images generated (seed %d)",
        len(train_pool),
        len(test_pool),
        seed,
    )
    return DataSplits(
        train=train,
        val=val,
        test=TransformView(test_pool, plain),
        num_classes=NUM_CLASSES,
        input_shape=(3, SIZE, SIZE),
        train_eval=train_eval,
        augmented=aug is not None,
        info={"mean": mean, "std": std, "num_test": int(num_test)},
    )
