"""CIFAR-shaped images held on the device, augmented there in batches (no loader workers).

The DataLoader path decodes, pads, crops, flips and normalizes every image in Python on the
CPU (about 120 us per image in one process on the 2-core dev machine, ~8,000 images/s:
``benchmarks/bench_data_path.py``), which starves a GPU training CIFAR-sized models unless
many workers help. Here a split is one uint8 tensor ``[N, C, H, W]`` (4x less memory than
floats; CIFAR-100's 50,000 training images take 150 MB) on any device, and
``DeviceImageLoader`` does the paper's augmentation with tensor ops on whole batches:
zero-pad ``pad`` px, a random ``H x W`` crop per sample (one gather, no loop over samples), a
random horizontal flip per sample, then normalization. CPU and GPU run the same code.

Randomness depends only on ``(seed, epoch)``: the sample order is ``splits.epoch_order``, the
one every path uses (tensors, DataLoader), and the crop offsets and flips of the whole epoch
are drawn per sample (by position in the split, so independent of the order) on a CPU
generator seeded with ``derive_seed("augment", seed, epoch)``, then moved to the device. The
numbers differ from the torchvision transforms' (same distribution, other draws).

A split augments when ``augment`` is set, whether or not the loader shuffles (as on the
DataLoader path, where the train split's transform augments either way); the plain splits
(val, test, train_eval) only normalize.

``to_device_images(splits, device)`` converts the splits of the CIFAR-style builders
(``Subset``s of ``TransformView``s over a pool with a uint8 ``.data`` array ``[N, H, W, C]`` and
``.targets``, as torchvision's CIFAR datasets and ``synthetic_cifar10`` have) without going
through the transforms; ``use_device_images`` decides, for ``data.device_data``, whether to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from .splits import DataSplits, EpochBatches, TransformView, derive_seed, same_device

logger = logging.getLogger(__name__)

Batch = tuple[Tensor, Tensor]
DEVICE_DATA_MODES = ("auto", "on", "off")
CIFAR_SHAPE = (3, 32, 32)
SPLIT_NAMES = ("train", "val", "test", "train_eval")


class DeviceImageSplit(Dataset):
    """uint8 images ``[N, C, H, W]`` + int64 labels + per-channel mean/std, on one device.

    ``augment`` marks a training split: ``make_loader`` then pads, crops and flips its batches
    (``DeviceImageLoader``). Items (``split[i]``) are always the plain normalized image, like
    ``train_eval``'s. The tensors are named ``images``/``labels`` (not ``x``/``y``) so that code
    reading a ``TensorSplit``'s inputs directly never takes raw pixels for inputs.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        augment: bool = False,
        pad: int = 4,
    ) -> None:
        if images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 pixels (0..255), got {images.dtype}")
        if images.dim() != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images must be [N, C, H, W] with N = len(labels), got {tuple(images.shape)} "
                f"and {tuple(labels.shape)} labels"
            )
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"mean/std need one value per channel ({images.shape[1]}), got {len(mean)}/{len(std)}")
        self.images = images
        self.labels = labels.to(images.device, torch.long)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        self.augment = bool(augment)
        self.pad = int(pad)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.normalize(self.images[i : i + 1])[0], self.labels[i]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def _with(self, images: Tensor, labels: Tensor, augment: bool) -> DeviceImageSplit:
        mean, std = self.mean.flatten().tolist(), self.std.flatten().tolist()
        return DeviceImageSplit(images, labels, mean, std, augment=augment, pad=self.pad)

    def to(self, device: str | torch.device) -> DeviceImageSplit:
        """This split on ``device``: ``self`` if it is already there, else a moved copy."""
        device = torch.device(device)
        if same_device(self.images.device, device):
            return self
        return self._with(self.images.to(device), self.labels.to(device), self.augment)

    def with_augment(self, augment: bool) -> DeviceImageSplit:
        """The same images (shared, not copied) with ``augment`` set, e.g. train -> train_eval."""
        return self if augment == self.augment else self._with(self.images, self.labels, augment)

    def normalize(self, images: Tensor) -> Tensor:
        """float32 ``(images / 255 - mean) / std``, the same operations as ToTensor + Normalize."""
        return images.float().div_(255).sub_(self.mean).div_(self.std)

    def __repr__(self) -> str:
        return (
            f"DeviceImageSplit(n={len(self)}, images={tuple(self.images.shape)} {self.images.dtype}, "
            f"augment={self.augment}, device={self.device})"
        )


def crop_flip(images: Tensor, dy: Tensor, dx: Tensor, flip: Tensor, pad: int) -> Tensor:
    """Zero-pad ``images`` ``[B, C, H, W]`` by ``pad`` px, crop ``H x W`` at ``(dy, dx)`` (per
    sample, in ``0..2*pad``), then mirror left-right where ``flip``; one gather, any dtype/device.

    Output pixel ``(i, j)`` of sample ``b`` is padded pixel ``(dy[b] + i, dx[b] + j)``, or
    ``(dy[b] + i, dx[b] + W - 1 - j)`` when flipped (crop first, then flip, as torchvision).
    """
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    wp = w + 2 * pad
    ar_h = torch.arange(h, device=images.device)
    ar_w = torch.arange(w, device=images.device)
    rows = dy.view(b, 1) + ar_h  # [B, H]
    cols = dx.view(b, 1) + torch.where(flip.view(b, 1), (w - 1) - ar_w, ar_w)  # [B, W]
    index = (rows.view(b, h, 1) * wp + cols.view(b, 1, w)).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


class DeviceImageLoader(EpochBatches):
    """Batches ``(x float32 normalized, y)`` of a ``DeviceImageSplit`` on its device (module doc)."""

    def augmentation(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """(dy, dx, flip) of every sample this epoch (CPU, by position), or None for plain splits."""
        if not self.split.augment:
            return None
        n, span = len(self.split), 2 * self.split.pad + 1
        g = torch.Generator().manual_seed(derive_seed("augment", self.seed, self.epoch))
        dy = torch.randint(0, span, (n,), generator=g)
        dx = torch.randint(0, span, (n,), generator=g)
        flip = torch.rand(n, generator=g) < 0.5
        return dy, dx, flip

    def __iter__(self) -> Iterator[Batch]:
        split, bs, dev = self.split, self.batch_size, self.split.device
        perm = self.order()
        perm = None if perm is None else perm.to(dev)
        aug = self.augmentation()
        aug = None if aug is None else tuple(t.to(dev) for t in aug)
        for start in self.starts():
            idx: Any = slice(start, start + bs) if perm is None else perm[start : start + bs]
            images = split.images[idx]
            if aug is not None:
                images = crop_flip(images, aug[0][idx], aug[1][idx], aug[2][idx], split.pad)
            yield split.normalize(images), split.labels[idx]


# ----------------------------------------------------------------------------- conversion


def _pool_and_rows(dataset: Dataset) -> tuple[Any, np.ndarray | None] | None:
    """(pool, rows or None: all) of a CIFAR-style split, or None if it holds no uint8 image array."""
    rows = None
    if isinstance(dataset, Subset):
        rows, dataset = np.asarray(dataset.indices, dtype=np.int64), dataset.dataset
    if isinstance(dataset, TransformView):
        dataset = dataset.base
    data = getattr(dataset, "data", None)
    ok = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 4
    return (dataset, rows) if ok and getattr(dataset, "targets", None) is not None else None


def holds_image_pools(splits: DataSplits) -> bool:
    """Whether every split is a view of a uint8 image pool (so ``to_device_images`` applies)."""
    return all(_pool_and_rows(getattr(splits, k)) is not None for k in SPLIT_NAMES)


def raw_images(dataset: Dataset) -> tuple[Tensor, Tensor]:
    """(uint8 images ``[N, C, H, W]``, int64 labels) of a CIFAR-style split, read from its pool."""
    found = _pool_and_rows(dataset)
    if found is None:
        raise ValueError(f"{type(dataset).__name__} is not a view of a uint8 image array (.data [N, H, W, C])")
    pool, rows = found
    data, labels = pool.data, np.asarray(pool.targets, dtype=np.int64)
    if rows is not None:
        data, labels = data[rows], labels[rows]
    images = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()
    return images, torch.from_numpy(np.ascontiguousarray(labels))


def _same_rows(a: Dataset, b: Dataset) -> bool:
    """Whether two splits are views of the same rows of the same pool (train and train_eval)."""
    pa, pb = _pool_and_rows(a), _pool_and_rows(b)
    if pa is None or pb is None or pa[0] is not pb[0]:
        return False
    return (pa[1] is None and pb[1] is None) or (
        pa[1] is not None and pb[1] is not None and np.array_equal(pa[1], pb[1])
    )


def to_device_images(splits: DataSplits, device: str | torch.device, pad: int = 4) -> DataSplits:
    """The four splits as ``DeviceImageSplit``s on ``device`` (train augmented iff
    ``splits.augmented``; train_eval shares train's images); ``info["device_data"]`` is True."""
    mean, std = splits.info["mean"], splits.info["std"]

    def convert(dataset: Dataset, augment: bool) -> DeviceImageSplit:
        images, labels = raw_images(dataset)
        return DeviceImageSplit(images, labels, mean, std, augment=augment, pad=pad).to(device)

    train = convert(splits.train, splits.augmented)
    if _same_rows(splits.train, splits.train_eval):
        train_eval = train.with_augment(False)
    else:
        train_eval = convert(splits.train_eval, False)
    return replace(
        splits,
        train=train,
        val=convert(splits.val, False),
        test=convert(splits.test, False),
        train_eval=train_eval,
        info={**splits.info, "device_data": True},
    )


def use_device_images(mode: str, device: torch.device, splits: DataSplits) -> bool:
    """``data.device_data``: ``off`` never; ``on`` always (CPU too; ValueError if the splits are not
    image pools); ``auto`` on a CUDA device for CIFAR-shaped (3x32x32) image pools."""
    if mode not in DEVICE_DATA_MODES:
        raise ValueError(f"{mode!r}: use one of {', '.join(DEVICE_DATA_MODES)}")
    if mode == "off":
        return False
    pools = holds_image_pools(splits)
    if mode == "on" and not pools:
        name = splits.info.get("name", "this data set")
        raise ValueError(
            f"'on' needs a data set held in memory as uint8 images (cifar10, cifar100, "
            f"synthetic_cifar10); {name} is not one (use auto or off)"
        )
    if mode == "on":
        return True
    return torch.device(device).type == "cuda" and pools and tuple(splits.input_shape) == CIFAR_SHAPE
