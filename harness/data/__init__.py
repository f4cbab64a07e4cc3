"""Datasets, train/val/test splits and deterministic loaders.

``build_splits(name, ...)`` returns a ``DataSplits`` (train / val / test / un-augmented
train_eval); ``make_loader`` iterates any of them in an order fixed by ``(seed, epoch)``;
``to_device_images`` puts CIFAR-shaped splits on a device, augmented there in batches.
Importing this package registers every dataset: ``mnist1d`` (embedded default), ``digits``,
``cifar10``, ``cifar100``, ``synthetic_cifar10``, ``imagefolder``, ``tiny_imagenet``.
"""

from __future__ import annotations

from .catalog import DATASETS, build_splits, dataset_options, list_datasets, register_dataset
from .device_images import (
    DEVICE_DATA_MODES,
    DeviceImageLoader,
    DeviceImageSplit,
    crop_flip,
    holds_image_pools,
    to_device_images,
    use_device_images,
)
from .loaders import SeededDataLoader, TensorLoader, make_loader
from .splits import (
    DataSplits,
    TensorSplit,
    TransformView,
    carve_val,
    derive_seed,
    epoch_order,
    preserve_global_rng,
    stratified_split,
)

# Dataset families: importing them registers their builders.
from . import mnist1d, sklearn_digits, synthetic_images, torchvision_sets  # noqa: F401  isort: skip
from .torchvision_sets import reorganize_tiny_imagenet_val

__all__ = [
    "DATASETS",
    "DEVICE_DATA_MODES",
    "DataSplits",
    "DeviceImageLoader",
    "DeviceImageSplit",
    "SeededDataLoader",
    "TensorLoader",
    "TensorSplit",
    "TransformView",
    "build_splits",
    "carve_val",
    "crop_flip",
    "dataset_options",
    "derive_seed",
    "epoch_order",
    "holds_image_pools",
    "list_datasets",
    "make_loader",
    "preserve_global_rng",
    "register_dataset",
    "reorganize_tiny_imagenet_val",
    "stratified_split",
    "to_device_images",
    "use_device_images",
]
