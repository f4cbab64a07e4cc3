"""Split containers and deterministic split carving.

Everything here is pure bookkeeping: which samples go where, decided only by a seed, so the
same ``(dataset, seed, val_fraction)`` gives the same train/val/test on every machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts, stable across processes and Python versions.

    ``hash()`` is salted per process, so it cannot be used for seeds that must agree between a
    run and its resumption (or between Ray workers); a blake2b digest of the parts can. Parts
    are compared by ``repr``: pass plain ``int``/``str`` (``np.int64(3)`` is not ``3`` here).
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of ``n`` samples in epoch ``epoch`` (a CPU LongTensor), from a private
    generator seeded with ``derive_seed("shuffle", seed, epoch)``: every loader path (tensors,
    device images, DataLoader) visits the samples in this order, so the paths are comparable."""
    g = torch.Generator().manual_seed(derive_seed("shuffle", int(seed), int(epoch)))
    return torch.randperm(n, generator=g)


class EpochBatches:
    """What the in-memory loaders share (``TensorLoader``, ``DeviceImageLoader``): a split cut
    into batches of ``batch_size`` in the order of ``(seed, epoch)`` (``epoch_order``)."""

    def __init__(self, split: Any, batch_size: int, *, shuffle: bool, seed: int, epoch: int, drop_last: bool) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> torch.Tensor | None:
        """The sample order of this epoch (a CPU LongTensor), or None when not shuffling."""
        return epoch_order(len(self.split), self.seed, self.epoch) if self.shuffle else None

    def starts(self) -> range:
        """The first position of every batch (a last short batch unless ``drop_last``)."""
        n, bs = len(self.split), self.batch_size
        return range(0, (n // bs) * bs if self.drop_last else n, bs)


@contextlib.contextmanager
def preserve_global_rng() -> Iterator[None]:
    """Restore Python's ``random``, ``numpy.random`` and torch's CPU RNG states on exit.

    Data preparation (generators that reseed, third-party imports that draw numbers) must not
    shift the caller's random streams: a training run seeded before ``build_splits`` would
    otherwise depend on which data set was built, or on whether a cache was hit.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class TensorSplit(Dataset):
    """An in-memory split: ``x`` (float, shape ``(N, *input_shape)``) and ``y`` (int64, ``(N,)``).

    Items are ``(x[i], y[i])`` like any dataset, but ``make_loader`` batches a ``TensorSplit``
    by slicing the tensors directly (no DataLoader, no per-item Python), and ``.to(device)``
    keeps a whole split resident on the GPU. ``indices`` optionally records, for each row, its
    position in the pool the split was carved from (bookkeeping for disjointness checks).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        if y.dim() != 1:
            raise ValueError(f"y must be 1-D, got shape {tuple(y.shape)}")
        self.x = x if x.is_floating_point() else x.float()
        self.y = y.long()
        self.indices = None if indices is None else torch.as_tensor(indices, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: str | torch.device) -> TensorSplit:
        """This split on ``device``: ``self`` if it is already there, else a moved copy."""
        device = torch.device(device)
        if same_device(self.x.device, device):
            return self
        return TensorSplit(self.x.to(device), self.y.to(device), self.indices)

    def subset(self, rows: torch.Tensor | np.ndarray | Sequence[int]) -> TensorSplit:
        """The rows ``rows`` (in that order) as a new split; ``indices`` follow along."""
        if isinstance(rows, torch.Tensor):
            rows_t = rows.cpu().long()
        else:
            rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        idx = rows_t if self.indices is None else self.indices[rows_t]
        rows_dev = rows_t.to(self.x.device)
        return TensorSplit(self.x[rows_dev], self.y[rows_dev], idx)

    def __repr__(self) -> str:
        return f"TensorSplit(n={len(self)}, x={tuple(self.x.shape)}, device={self.device})"


def same_device(have: torch.device, want: torch.device) -> bool:
    """Whether a tensor on ``have`` already satisfies a request for ``want`` ("cuda" = current)."""
    if have.type != want.type:
        return False
    if want.index is None or have.type == "cpu":
        return have.type != "cuda" or have.index == torch.cuda.current_device()
    return have.index == want.index


class TransformView(Dataset):
    """Items of ``base`` (``(sample, label)``) with ``transform`` applied to the sample.

    Lets the augmented train split and the plain val / train_eval splits share one underlying
    dataset object (one copy of CIFAR in memory) instead of loading the files twice. Labels
    come out as int64 scalar tensors, the item contract of this package.
    """

    def __init__(self, base: Dataset, transform: Callable[[Any], torch.Tensor] | None) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample, label = self.base[i]
        if self.transform is not None:
            sample = self.transform(sample)
        return sample, torch.as_tensor(label, dtype=torch.long)


@dataclass
class DataSplits:
    """The four datasets a run needs, plus what a model needs to know about them.

    ``train`` may use random augmentation (``augmented`` says so); ``train_eval`` holds the
    same samples in the same order without augmentation, for train accuracy / confidence and
    for precomputing teacher logits. ``val`` is carved from the training set (used for scoring
    and hyperparameter choice), ``test`` is the separate test set (only reported). ``info``
    carries JSON-friendly facts: name, sizes, the normalization ``mean``/``std`` per channel
    (so an input can be mapped back to [0, 1], e.g. for the reconstruction MI proxy), etc.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    train_eval: Dataset
    augmented: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("train", "val", "test")}  # type: ignore[arg-type]


def stratified_split(
    labels: np.ndarray | Sequence[int], fraction: float, seed: int, *, salt: str = "val"
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..N-1`` into (keep, taken) with ``round(fraction * N)`` taken.

    Stratified by label: each class gives ``floor(fraction * n_c)`` samples, and the remaining
    quota goes to the classes with the largest fractional parts (ties by class order), so class
    proportions are kept as closely as integer counts allow. Both outputs are sorted, so the
    kept positions stay in their original order. Uses its own ``numpy`` Generator seeded from
    ``(seed, salt)``; the global RNG is never touched.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    total = int(round(fraction * n))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * fraction
    quota = np.floor(exact).astype(np.int64)
    remainder = total - int(quota.sum())
    if remainder > 0:
        order = np.lexsort((np.arange(len(classes)), -(exact - quota)))
        quota[order[:remainder]] += 1
    rng = np.random.default_rng(derive_seed(int(seed), salt))
    taken: list[np.ndarray] = []
    for cls, q in zip(classes, quota):
        if q == 0:
            continue
        members = np.flatnonzero(labels == cls)
        taken.append(rng.permutation(members)[:q])
    taken_idx = np.sort(np.concatenate(taken)) if taken else np.empty(0, dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[taken_idx] = False
    return np.flatnonzero(mask), taken_idx


def carve_val(labels: np.ndarray | Sequence[int], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, val positions) of a training pool: ``val_fraction`` goes to val."""
    return stratified_split(labels, val_fraction, seed, salt="val")
