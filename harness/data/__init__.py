"""Datasets, train/val/test splits and deterministic loaders.

``build_splits(name, ...)`` returns a ``DataSplits`` (train / val / test / un-augmented
train_eval); ``make_loader`` iterates any of them in an order fixed by ``(seed, epoch)``.
Importing this package registers every dataset: ``mnist1d`` (embedded default), ``digits``,
``cifar10``, ``cifar100``, ``imagefolder``, ``tiny_imagenet``.
"""
from __future__ import annotations

from .catalog import DATASETS, build_splits, dataset_options, list_datasets, register_dataset
from .loaders import SeededDataLoader, TensorLoader, make_loader
from .splits import (
    DataSplits,
    TensorSplit,
    TransformView,
    carve_val,
    derive_seed,
    preserve_global_rng,
    stratified_split,
)

# Dataset families: importing them registers their builders.
from . import mnist1d, sklearn_digits, torchvision_sets  # noqa: E402,F401  isort: skip
from .torchvision_sets import reorganize_tiny_imagenet_val  # noqa: E402

__all__ = [
    "DATASETS",
    "DataSplits",
    "SeededDataLoader",
    "TensorLoader",
    "TensorSplit",
    "TransformView",
    "build_splits",
    "carve_val",
    "dataset_options",
    "derive_seed",
    "list_datasets",
    "make_loader",
    "preserve_global_rng",
    "register_dataset",
    "reorganize_tiny_imagenet_val",
    "stratified_split",
]
