"""harness.data: splits (determinism, disjointness, caching, RNG hygiene) and loaders, offline."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from harness.data import (
    DataSplits,
    TensorSplit,
    build_splits,
    catalog,
    dataset_options,
    list_datasets,
    make_loader,
    register_dataset,
    reorganize_tiny_imagenet_val,
    stratified_split,
)
from harness.registry import Registry

N_SMALL = 1000  # mnist1d samples for tests: 250 train pool (225 train + 25 val), 750 test


def row_hashes(ds: Dataset) -> set[str]:
    xs = torch.stack([ds[i][0] for i in range(len(ds))]) if not isinstance(ds, TensorSplit) else ds.x
    return {hashlib.sha1(r.contiguous().numpy().tobytes()).hexdigest() for r in xs.cpu()}


def data_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages ``harness.data`` logged so far in this test."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("harness.data")]


def rng_states() -> tuple:
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def assert_rng_unchanged(before: tuple) -> None:
    after = rng_states()
    assert after[0] == before[0], "python random state changed"
    assert all(np.array_equal(a, b) for a, b in zip(after[1], before[1])), "numpy global RNG state changed"
    assert torch.equal(after[2], before[2]), "torch global RNG state changed"


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mnist1d-cache")


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path) -> DataSplits:
    random.seed(123)
    np.random.seed(123)
    before = rng_states()
    splits = build_splits("mnist1d", storage_dir=str(mnist_dir), seed=0, num_samples=N_SMALL)
    assert_rng_unchanged(before)  # generation (cache miss) path
    assert splits.info["cache_hit"] is False
    return splits


# ----------------------------------------------------------------------------- registry


def test_registry_lists_all_families() -> None:
    assert set(list_datasets()) >= {"mnist1d", "digits", "cifar10", "cifar100", "imagefolder", "tiny_imagenet"}


def test_unknown_dataset_lists_known(tmp_path: Path) -> None:
    with pytest.raises(KeyError) as err:
        build_splits("mnist2d", storage_dir=str(tmp_path), seed=0)
    assert "mnist1d" in str(err.value) and "cifar100" in str(err.value)


def test_unknown_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="num_sampels"):
        build_splits("mnist1d", storage_dir=str(tmp_path), seed=0, num_sampels=100)
    with pytest.raises(TypeError, match="image_size"):
        build_splits("digits", storage_dir=str(tmp_path), seed=0, image_size=8)


def test_builders_cannot_shift_global_rng(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def greedy_builder(**kwargs: object) -> DataSplits:  # like a library that draws at import
        random.random(), np.random.rand(), torch.rand(1)
        empty = TensorSplit(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long))
        return DataSplits(empty, empty, empty, 1, (1,), empty)

    registry: Registry = Registry("dataset")
    registry.register("greedy")(greedy_builder)
    monkeypatch.setattr(catalog, "DATASETS", registry)
    before = rng_states()
    build_splits("greedy", storage_dir=str(tmp_path), seed=0)
    assert_rng_unchanged(before)


def test_bad_val_fraction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        build_splits("digits", storage_dir=str(tmp_path), seed=0, val_fraction=1.0)


# ----------------------------------------------------------------------------- mnist1d


def test_mnist1d_shapes_and_classes(mnist: DataSplits) -> None:
    assert mnist.sizes() == {"train": 225, "val": 25, "test": 750}
    assert mnist.num_classes == 10 and mnist.input_shape == (1, 40)
    assert mnist.augmented is False and mnist.train_eval is mnist.train
    x, y = mnist.train[0]
    assert x.shape == (1, 40) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.shape == ()
    for split in (mnist.train, mnist.val, mnist.test):
        assert isinstance(split, TensorSplit)
        assert split.y.min() >= 0 and split.y.max() < 10
    assert set(mnist.val.y.tolist()) == set(range(10))  # stratified: every class in val
    # standardized with the train portion's statistics
    assert abs(float(mnist.train.x.mean())) < 1e-5 and abs(float(mnist.train.x.std()) - 1) < 1e-2


def test_mnist1d_splits_disjoint(mnist: DataSplits) -> None:
    idx = [set(s.indices.tolist()) for s in (mnist.train, mnist.val, mnist.test)]
    assert sum(map(len, idx)) == N_SMALL and len(set.union(*idx)) == N_SMALL
    rows = [row_hashes(s) for s in (mnist.train, mnist.val, mnist.test)]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])


def test_mnist1d_cache_hit_identical(mnist: DataSplits, mnist_dir: Path) -> None:
    assert (mnist_dir / f"mnist1d-n{N_SMALL}-s0.npz").is_file()
    meta = json.loads((mnist_dir / f"mnist1d-n{N_SMALL}-s0.json").read_text())
    assert meta["n"] == N_SMALL and meta["key"]["seed"] == 0
    before = rng_states()
    again = build_splits("mnist1d", storage_dir=str(mnist_dir), seed=0, num_samples=N_SMALL)
    assert_rng_unchanged(before)
    assert again.info["cache_hit"] is True
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(again, name).x, getattr(mnist, name).x)
        assert torch.equal(getattr(again, name).y, getattr(mnist, name).y)


def test_mnist1d_deterministic_and_seeded(mnist: DataSplits, tmp_path: Path) -> None:
    fresh = build_splits("mnist1d", storage_dir=str(tmp_path / "a"), seed=0, num_samples=N_SMALL)
    assert fresh.info["cache_hit"] is False
    assert torch.equal(fresh.train.x, mnist.train.x) and torch.equal(fresh.val.y, mnist.val.y)
    other = build_splits("mnist1d", storage_dir=str(tmp_path / "a"), seed=1, num_samples=N_SMALL)
    assert not row_hashes(other.val) & row_hashes(mnist.val)
    # the same generated data with another val fraction keeps the test set
    wider = build_splits("mnist1d", storage_dir=str(tmp_path / "a"), seed=0, num_samples=N_SMALL, val_fraction=0.2)
    assert wider.info["cache_hit"] is True and len(wider.val) == 50
    assert torch.equal(wider.test.y, mnist.test.y)


def test_mnist1d_logs_generation_then_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="harness")
    npz = tmp_path / "mnist1d-n200-s2.npz"
    build_splits("mnist1d", storage_dir=str(tmp_path), seed=2, num_samples=200)
    first = data_log(caplog)
    assert len(first) == 1, first
    assert first[0].startswith("[data] generating MNIST-1D (200 samples, seed 2) ...")
    assert f"cached at {npz} (" in first[0]
    caplog.clear()
    build_splits("mnist1d", storage_dir=str(tmp_path), seed=2, num_samples=200)
    assert data_log(caplog) == [f"[data] MNIST-1D from cache {npz}"]


def test_mnist1d_damaged_cache_regenerates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = build_splits("mnist1d", storage_dir=str(tmp_path), seed=3, num_samples=200)
    (tmp_path / "mnist1d-n200-s3.npz").write_bytes(b"garbage")
    caplog.set_level(logging.INFO, logger="harness")
    second = build_splits("mnist1d", storage_dir=str(tmp_path), seed=3, num_samples=200)
    assert second.info["cache_hit"] is False
    assert any("stale or damaged" in m for m in data_log(caplog))
    assert torch.equal(first.train.x, second.train.x)
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


# ----------------------------------------------------------------------------- digits


def test_digits(tmp_path: Path) -> None:
    before = rng_states()
    a = build_splits("digits", storage_dir=str(tmp_path), seed=0)
    assert_rng_unchanged(before)
    b = build_splits("digits", storage_dir=str(tmp_path), seed=0)
    c = build_splits("digits", storage_dir=str(tmp_path), seed=1)
    assert a.num_classes == 10 and a.input_shape == (1, 8, 8) and not a.augmented
    assert sum(a.sizes().values()) == 1797 and a.sizes()["test"] == 359
    assert 0.0 <= float(a.train.x.min()) and float(a.train.x.max()) <= 1.0
    idx = [set(s.indices.tolist()) for s in (a.train, a.val, a.test)]
    assert len(set.union(*idx)) == 1797 and sum(map(len, idx)) == 1797
    assert torch.equal(a.val.indices, b.val.indices) and torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.val.indices, c.val.indices)


def test_stratified_split_counts() -> None:
    labels = np.repeat(np.arange(3), [10, 20, 31])
    keep, taken = stratified_split(labels, 0.1, seed=0)
    assert len(taken) == round(0.1 * 61) and len(keep) + len(taken) == 61
    assert not set(keep) & set(taken)
    assert np.all(np.diff(keep) > 0)  # kept positions stay in order
    assert set(labels[taken]) == {0, 1, 2}
    k0, t0 = stratified_split(labels, 0.0, seed=0)
    assert len(t0) == 0 and len(k0) == 61


# ----------------------------------------------------------------------------- loaders


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_tensor_loader_deterministic_per_epoch() -> None:
    split = TensorSplit(torch.arange(103, dtype=torch.float32).unsqueeze(1), torch.arange(103) % 7)
    before = rng_states()
    e0 = batches(make_loader(split, 10, shuffle=True, seed=5, epoch=0))
    e0_again = batches(make_loader(split, 10, shuffle=True, seed=5, epoch=0))
    e1 = batches(make_loader(split, 10, shuffle=True, seed=5, epoch=1))
    e1_np = batches(make_loader(split, 10, shuffle=True, seed=np.int64(5), epoch=torch.tensor(1)))
    assert torch.equal(torch.cat([x for x, _ in e1]), torch.cat([x for x, _ in e1_np]))
    other_seed = batches(make_loader(split, 10, shuffle=True, seed=6, epoch=0))
    assert_rng_unchanged(before)
    assert len(e0) == 11
    assert len(e0_again) == len(e0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(e0, e0_again))
    order = [torch.cat([x for x, _ in bs]).squeeze(1).long() for bs in (e0, e1, other_seed)]
    for o in order:  # every sample exactly once
        assert sorted(o.tolist()) == list(range(103))
    assert not torch.equal(order[0], order[1]) and not torch.equal(order[0], order[2])
    # labels travel with their rows
    assert all(torch.equal(x.squeeze(1).long() % 7, y) for x, y in e0)
    # re-iterating one loader repeats the epoch; no shuffle keeps order; drop_last drops the tail
    loader = make_loader(split, 10, shuffle=True, seed=5, epoch=0)
    assert torch.equal(torch.cat([x for x, _ in loader]), torch.cat([x for x, _ in loader]))
    plain = torch.cat([x for x, _ in make_loader(split, 10, shuffle=False)]).squeeze(1)
    assert torch.equal(plain, torch.arange(103, dtype=torch.float32))
    dropped = make_loader(split, 10, shuffle=True, drop_last=True)
    assert len(dropped) == 10 and sum(len(y) for _, y in dropped) == 100


class NoisyDataset(Dataset):
    """Adds torch and python random noise per item, like a random torchvision augmentation."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = float(torch.rand(())) + random.random()
        return torch.tensor([float(i), noise]), torch.tensor(i % 3)


def test_dataloader_path_deterministic_augmentation() -> None:
    ds = NoisyDataset(37)
    before = rng_states()
    a = batches(make_loader(ds, 8, shuffle=True, seed=1, epoch=2))
    assert_rng_unchanged(before)
    # consuming the global RNG between batches must not change anything
    b = []
    for x, y in make_loader(ds, 8, shuffle=True, seed=1, epoch=2):
        torch.rand(5), np.random.rand(), random.random()
        b.append((x, y))
    c = batches(make_loader(ds, 8, shuffle=True, seed=1, epoch=3))
    assert torch.equal(torch.cat([x for x, _ in a]), torch.cat([x for x, _ in b]))
    ids = torch.cat([x[:, 0] for x, _ in a]).long()
    assert sorted(ids.tolist()) == list(range(37))
    assert not torch.equal(torch.cat([x for x, _ in a]), torch.cat([x for x, _ in c]))
    # item noise depends on (seed, epoch, index) only, not on the order it was drawn in
    unshuffled = torch.cat([x for x, _ in make_loader(ds, 8, shuffle=False, seed=1, epoch=2)])
    shuffled = torch.cat([x for x, _ in a])
    assert torch.equal(unshuffled[shuffled[:, 0].long()], shuffled)


def test_dataloader_workers_match_main_process() -> None:
    ds = NoisyDataset(24)
    main = torch.cat([x for x, _ in make_loader(ds, 6, shuffle=True, seed=4, epoch=1)])
    workers = torch.cat([x for x, _ in make_loader(ds, 6, shuffle=True, seed=4, epoch=1, num_workers=2)])
    assert torch.equal(main, workers)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_tensor_loader_gpu_resident() -> None:
    split = TensorSplit(torch.arange(50, dtype=torch.float32).unsqueeze(1), torch.arange(50) % 5)
    on_gpu = split.to("cuda")
    assert on_gpu.to("cuda") is on_gpu and on_gpu.device.type == "cuda"
    cpu = batches(make_loader(split, 8, shuffle=True, seed=2, epoch=3))
    gpu = [(x, y) for x, y in make_loader(on_gpu, 8, shuffle=True, seed=2, epoch=3, device="cuda")]
    assert gpu and all(x.is_cuda and y.is_cuda for x, y in gpu)
    cpu_x = torch.cat([x for x, _ in cpu])
    assert torch.equal(cpu_x, torch.cat([x for x, _ in gpu]).cpu())
    moved = [(x, y) for x, y in make_loader(split, 8, shuffle=True, seed=2, epoch=3, device="cuda")]
    assert torch.equal(cpu_x, torch.cat([x for x, _ in moved]).cpu())


# ----------------------------------------------------------------------------- CIFAR


def write_fake_cifar10(root: Path, per_batch: int = 6, n_test: int = 10) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        entry = {"data": data, "labels": [int(v) for v in np.arange(n) % 10]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)


def test_cifar_missing_root_says_how(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="download") as err:
        build_splits("cifar10", root=str(tmp_path / "nowhere"), storage_dir=str(tmp_path), seed=0)
    assert "cifar-10-batches-py" in str(err.value)
    with pytest.raises(FileNotFoundError, match="download") as err:
        build_splits("cifar100", root=None, storage_dir=str(tmp_path), seed=0)
    assert "cifar-100-python" in str(err.value)


def test_cifar_fake_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_fake_cifar10(tmp_path)
    with pytest.raises(RuntimeError, match="verify"):  # md5 check on by default
        build_splits("cifar10", root=str(tmp_path), storage_dir=str(tmp_path), seed=0)
    kw = dict(root=str(tmp_path), storage_dir=str(tmp_path), seed=0, verify=False)
    caplog.set_level(logging.INFO, logger="harness")
    s = build_splits("cifar10", val_fraction=0.2, **kw)
    assert data_log(caplog) == [f"[data] cifar10 from {tmp_path}/cifar-10-batches-py (30 train, 10 test images)"]
    assert s.sizes() == {"train": 24, "val": 6, "test": 10}
    assert s.num_classes == 10 and s.input_shape == (3, 32, 32) and s.augmented
    x, y = s.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64 and y.shape == ()
    assert set(s.train.indices).isdisjoint(s.val.indices)
    assert s.train_eval.indices == s.train.indices  # same samples, same order
    assert torch.equal(s.train_eval[0][0], s.train_eval[0][0])  # plain: no randomness
    e0 = torch.cat([x for x, _ in make_loader(s.train, 8, shuffle=True, seed=0, epoch=0)])
    e0b = torch.cat([x for x, _ in make_loader(s.train, 8, shuffle=True, seed=0, epoch=0)])
    e1 = torch.cat([x for x, _ in make_loader(s.train, 8, shuffle=True, seed=0, epoch=1)])
    assert torch.equal(e0, e0b) and not torch.equal(e0, e1)
    plain = build_splits("cifar10", augment=False, **kw)
    assert not plain.augmented


# ----------------------------------------------------------------------------- ImageFolder


def write_image_tree(root: Path, classes: list[str], per_class: dict[str, int], size: int = 16) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for split, n in per_class.items():
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{c}_{i}.png")


def test_imagefolder_tree(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image_tree(tmp_path, ["ant", "bee", "cat"], {"train": 5, "val": 2})
    caplog.set_level(logging.INFO, logger="harness")
    s = build_splits(
        "imagefolder", root=str(tmp_path), storage_dir=str(tmp_path), seed=0, image_size=16, val_fraction=0.2
    )
    assert data_log(caplog) == [
        f"[data] imagefolder from {tmp_path}: 15 train images in 3 classes (train/), 6 test images (val/)"
    ]
    assert s.num_classes == 3 and s.input_shape == (3, 16, 16) and s.augmented
    assert s.sizes() == {"train": 12, "val": 3, "test": 6}
    assert s.info["test_dir"] == "val"
    xs, ys = next(iter(make_loader(s.train, 4, shuffle=True, seed=0)))
    assert xs.shape == (4, 3, 16, 16) and ys.dtype == torch.int64
    assert sorted({int(s.test[i][1]) for i in range(len(s.test))}) == [0, 1, 2]
    a = torch.cat([x for x, _ in make_loader(s.train, 4, shuffle=True, seed=0, epoch=0)])
    b = torch.cat([x for x, _ in make_loader(s.train, 4, shuffle=True, seed=0, epoch=0)])
    assert torch.equal(a, b)


def test_imagefolder_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train"):
        build_splits("imagefolder", root=str(tmp_path / "none"), storage_dir=str(tmp_path), seed=0)
    with pytest.raises(FileNotFoundError, match="data.root"):
        build_splits("tiny_imagenet", root=None, storage_dir=str(tmp_path), seed=0)


def test_tiny_imagenet_flat_val(tmp_path: Path) -> None:
    from PIL import Image

    classes = ["n01", "n02"]
    for c in classes:
        (tmp_path / "train" / c / "images").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (64, 64), (i * 40, 0, 0)).save(tmp_path / "train" / c / "images" / f"{c}_{i}.JPEG")
    (tmp_path / "val" / "images").mkdir(parents=True)
    lines = []
    for i in range(4):
        name = f"val_{i}.JPEG"
        Image.new("RGB", (64, 64), (0, i * 40, 0)).save(tmp_path / "val" / "images" / name)
        lines.append(f"{name}\t{classes[i % 2]}\t0\t0\t63\t63")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    kwargs = dict(root=str(tmp_path), storage_dir=str(tmp_path), seed=0, expected_classes=2)
    with pytest.raises(ValueError, match="reorganize_tiny_imagenet_val"):
        build_splits("tiny_imagenet", **kwargs)
    assert reorganize_tiny_imagenet_val(tmp_path) == 4
    s = build_splits("tiny_imagenet", **kwargs)
    assert s.num_classes == 2 and s.input_shape == (3, 64, 64) and len(s.test) == 4
    with pytest.raises(ValueError, match="200"):
        build_splits("tiny_imagenet", root=str(tmp_path), storage_dir=str(tmp_path), seed=0)


def test_dataset_options_and_duplicate_names() -> None:
    assert dataset_options("mnist1d") == {"num_samples": 16000, "train_split": 0.25}
    assert dataset_options("digits") == {"test_fraction": 0.2}
    assert dataset_options("cifar10") == {"verify": True}
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("mnist1d")(lambda **kwargs: None)
