"""What a data set looks like, without reading or generating it: input shape, classes, val size.

``--dry-run`` and ``ckd status`` size models (parameters per student) and the scorer's sample
without touching the data: generating MNIST-1D or opening CIFAR only to count would write a
cache (or need the files). Each entry mirrors its builder: the training pool that val is carved
from (``stratified_split`` takes exactly ``round(val_fraction * pool)``), the classes and the
input shape. ``None`` marks what only the files can tell (an ``imagefolder``'s classes and size).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .catalog import dataset_options

DIGITS_IMAGES = 1797  # sklearn's bundled digits
CIFAR_TRAIN = 50_000
TINY_IMAGENET_TRAIN = 100_000


@dataclass(frozen=True)
class DataShape:
    """A data set's model-facing shape and the size of its training pool (None: unknown here)."""

    input_shape: tuple[int, ...] | None
    num_classes: int | None
    train_pool: int | None

    def val_size(self, val_fraction: float) -> int | None:
        """Rows of the validation split (``stratified_split``'s count), None when the pool is unknown."""
        return None if self.train_pool is None else int(round(float(val_fraction) * self.train_pool))


def _folder(o: Mapping[str, Any], pool: int | None) -> DataShape:
    size = int(o["image_size"])
    classes = o.get("expected_classes")
    return DataShape((3, size, size), None if classes is None else int(classes), pool)


SHAPES: dict[str, Callable[[Mapping[str, Any]], DataShape]] = {
    "mnist1d": lambda o: DataShape((1, 40), 10, int(int(o["num_samples"]) * float(o["train_split"]))),
    "digits": lambda o: DataShape((1, 8, 8), 10, DIGITS_IMAGES - int(round(float(o["test_fraction"]) * DIGITS_IMAGES))),
    "synthetic_cifar10": lambda o: DataShape((3, 32, 32), 10, int(o["num_samples"])),
    "cifar10": lambda o: DataShape((3, 32, 32), 10, CIFAR_TRAIN),
    "cifar100": lambda o: DataShape((3, 32, 32), 100, CIFAR_TRAIN),
    "imagefolder": lambda o: _folder(o, None),
    "tiny_imagenet": lambda o: _folder(o, TINY_IMAGENET_TRAIN),
}


def data_shape(name: str, options: Mapping[str, Any] | None = None) -> DataShape:
    """The shape of data set ``name`` with its ``options`` (the builder's defaults fill the rest);
    all None for a data set registered without an entry here."""
    if name not in SHAPES:
        return DataShape(None, None, None)
    merged = {**dataset_options(name), **dict(options or {})}
    return SHAPES[name](merged)
