"""Deterministic batch iteration: same ``(seed, epoch)`` -> same batches, on any resume.

Three paths behind one function, ``make_loader``:

* ``TensorSplit`` (in-memory tensors): batches are index slices of the tensors, optionally
  kept on the GPU (``device="cuda"``); no DataLoader and no per-item Python. The shuffle
  order is ``epoch_order``: ``torch.randperm`` drawn from a private ``torch.Generator`` seeded
  with ``derive_seed("shuffle", seed, epoch)``.
* ``DeviceImageSplit`` (uint8 images on a device, ``device_images.py``): the same order as
  ``TensorLoader``; pad/crop/flip and normalization run batched on the device.
* any other ``Dataset``: a ``torch.utils.data.DataLoader`` whose sampler is that same order
  (all three paths visit the samples in one order for a given ``(seed, epoch)``, so they can
  be compared). Augmentation randomness is made deterministic *per item*: every
  ``dataset[i]`` runs inside a forked RNG scope (the torch CPU generator and Python's
  ``random``, which is what torchvision transforms draw from, are saved, seeded from
  ``(seed, epoch, i)`` and restored afterwards; about 20 us per item). So sample ``i`` of
  epoch ``e`` gets the same random crop/flip whatever the batch order, the number of workers
  or what else consumed the global RNG in between, and the caller's global RNG state is left
  as it was. ``numpy.random`` is not forked (saving its state costs ~70 us per item and
  torchvision never uses it): a transform drawing from it is deterministic only per worker
  (workers seed numpy from their torch seed), not per item.

All three loaders are re-iterable: each ``iter()`` restarts from the same seeds and yields the
same batches. Build a new loader per epoch (``epoch=e``) to get that epoch's order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .device_images import DeviceImageLoader, DeviceImageSplit
from .splits import EpochBatches, TensorSplit, derive_seed

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorLoader(EpochBatches):
    """Batches of a ``TensorSplit`` by tensor slicing; yields ``(x, y)`` on the split's device."""

    def __iter__(self) -> Iterator[Batch]:
        x, y = self.split.x, self.split.y
        perm = self.order()
        if perm is not None:
            perm = perm.to(x.device)
        for start in self.starts():
            if perm is None:
                yield x[start : start + self.batch_size], y[start : start + self.batch_size]
            else:
                idx = perm[start : start + self.batch_size]
                yield x[idx], y[idx]


class _SeededItems(Dataset):
    """Wraps a dataset so that item ``i`` is produced under RNG seeds fixed by ``(base_seed, i)``."""

    def __init__(self, dataset: Dataset, base_seed: int) -> None:
        self.dataset = dataset
        self.base_seed = base_seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        s = derive_seed(self.base_seed, int(i))
        py_state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(s)
                random.seed(s)
                return self.dataset[i]
        finally:
            random.setstate(py_state)


def _seed_worker(worker_id: int) -> None:
    """DataLoader worker init: seed ``random``/``numpy`` from the worker's (deterministic) torch seed."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


class SeededDataLoader(EpochBatches):
    """A DataLoader rebuilt on every ``iter()`` from ``(seed, epoch)``; moves batches to ``device``."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        epoch: int,
        device: torch.device | None,
        num_workers: int,
        drop_last: bool,
    ) -> None:
        super().__init__(dataset, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last)
        self.dataset, self.device, self.num_workers = dataset, device, num_workers

    def _loader(self) -> DataLoader:
        order = self.order().tolist() if self.shuffle else None
        g = torch.Generator().manual_seed(derive_seed("shuffle", self.seed, self.epoch))  # worker base seed
        return DataLoader(
            _SeededItems(self.dataset, derive_seed("augment", self.seed, self.epoch)),
            batch_size=self.batch_size,
            sampler=order,
            generator=g,
            num_workers=self.num_workers,
            drop_last=self.drop_last,
            pin_memory=self.device is not None and self.device.type == "cuda",
            worker_init_fn=_seed_worker if self.num_workers > 0 else None,
        )

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self._loader():
            if self.device is not None:
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
            yield x, y


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    device: str | torch.device | None = "cpu",
    num_workers: int = 0,
    drop_last: bool = False,
) -> TensorLoader | DeviceImageLoader | SeededDataLoader:
    """An iterable of ``(x, y)`` batches whose order and augmentation depend only on ``(seed, epoch)``.

    A ``TensorSplit`` takes the fast path (tensor slicing, data moved to ``device`` once per
    loader; pass a split already moved with ``split.to(device)`` to avoid even that copy); so
    does a ``DeviceImageSplit``, augmented on its device when ``split.augment``.
    Anything else goes through a DataLoader with per-item seeded augmentation (module doc).
    ``device=None`` leaves batches where the data is. ``num_workers`` is ignored for tensors.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    seed, epoch = int(seed), int(epoch)  # numpy / tensor ints would derive different seeds
    dev = None if device is None else torch.device(device)
    if isinstance(dataset, TensorSplit):
        split = dataset if dev is None else dataset.to(dev)
        return TensorLoader(split, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last)
    if isinstance(dataset, DeviceImageSplit):
        images = dataset if dev is None else dataset.to(dev)
        return DeviceImageLoader(images, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last)
    return SeededDataLoader(
        dataset,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        epoch=epoch,
        device=dev,
        num_workers=num_workers,
        drop_last=drop_last,
    )
