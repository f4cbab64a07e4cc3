"""The device-resident CIFAR path (harness/data/device_images.py), synthetic_cifar10, and the
precision options (harness/precision.py), on CPU with the code that runs on a GPU."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness import precision as prec
from harness.cli import main
from harness.config import DEVICE_DATA_MODES, PRECISIONS, ConfigError
from harness.config_loading import load_config
from harness.data import DEVICE_DATA_MODES as DATA_MODES
from harness.data import (
    DataSplits,
    DeviceImageLoader,
    DeviceImageSplit,
    SeededDataLoader,
    TensorLoader,
    TensorSplit,
    build_splits,
    crop_flip,
    make_loader,
    to_device_images,
    use_device_images,
)
from harness.experiment import load_splits
from harness.models import create_model
from harness.store import CheckpointStore
from harness.training import train_epoch
from tests.helpers import QUICKSTART, tiny_overrides


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> DataSplits:
    """synthetic_cifar10 as the builders give it (DataLoader path): 300 pool images, 60 test."""
    return build_splits(
        "synthetic_cifar10",
        storage_dir=str(tmp_path_factory.mktemp("c")),
        seed=3,
        val_fraction=0.2,
        num_samples=300,
        num_test=60,
    )


@pytest.fixture(scope="module")
def dev(synth: DataSplits) -> DataSplits:
    return to_device_images(synth, "cpu")


def epoch_batches(split, epoch: int, seed: int = 7, bs: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(make_loader(split, bs, shuffle=True, seed=seed, epoch=epoch))


# ----------------------------------------------------------------------------- synthetic_cifar10


def test_synthetic_cifar10_splits_like_cifar(synth: DataSplits, tmp_path: Path) -> None:
    assert synth.sizes() == {"train": 240, "val": 60, "test": 60}
    assert synth.num_classes == 10 and synth.input_shape == (3, 32, 32) and synth.augmented
    x, y = synth.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(synth.train.indices).isdisjoint(synth.val.indices)
    again = build_splits(
        "synthetic_cifar10", storage_dir=str(tmp_path), seed=3, val_fraction=0.2, num_samples=300, num_test=60
    )
    other = build_splits(
        "synthetic_cifar10", storage_dir=str(tmp_path), seed=4, val_fraction=0.2, num_samples=300, num_test=60
    )
    pool = synth.train.dataset.base
    assert (again.train.dataset.base.data == pool.data).all()  # deterministic from the seed
    assert not (other.train.dataset.base.data == pool.data).all()
    assert sorted(pool.targets[:10]) != [0] * 10 and len(set(pool.targets)) == 10


def test_to_device_images_shapes_and_sharing(synth: DataSplits, dev: DataSplits) -> None:
    assert all(isinstance(getattr(dev, k), DeviceImageSplit) for k in ("train", "val", "test", "train_eval"))
    assert dev.sizes() == synth.sizes() and dev.info["device_data"] is True
    assert dev.train.augment and not dev.train_eval.augment and not dev.val.augment and not dev.test.augment
    assert dev.train.images.dtype == torch.uint8 and dev.train.images.shape == (240, 3, 32, 32)
    assert dev.train_eval.images is dev.train.images  # one copy of the training images
    assert torch.equal(dev.train.labels, torch.tensor([int(synth.train[i][1]) for i in range(240)]))


# ----------------------------------------------------------------------------- the loader


def test_device_batches_deterministic_per_epoch(dev: DataSplits) -> None:
    rng_before = torch.get_rng_state()
    e0, e0b, e1 = epoch_batches(dev.train, 0), epoch_batches(dev.train, 0), epoch_batches(dev.train, 1)
    assert torch.equal(torch.get_rng_state(), rng_before)  # private generators only
    assert [x.shape[0] for x, _ in e0] == [64, 64, 64, 48]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(e0, e0b))
    assert not torch.equal(torch.cat([x for x, _ in e0]), torch.cat([x for x, _ in e1]))
    assert [len(b[0]) for b in make_loader(dev.train, 64, shuffle=True, seed=7, drop_last=True)] == [64] * 3
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in e0)
    # the train split augments without shuffling too (as the DataLoader path's transform does)
    in_order = torch.cat([x for x, _ in make_loader(dev.train, 64, shuffle=False, seed=7, epoch=0)])
    plain = torch.cat([x for x, _ in make_loader(dev.train_eval, 64, shuffle=False)])
    assert in_order.shape == plain.shape and not torch.allclose(in_order, plain)


def test_same_order_as_tensor_and_dataloader_paths(synth: DataSplits, dev: DataSplits) -> None:
    for epoch in (0, 3):
        loader = make_loader(dev.train, 50, shuffle=True, seed=11, epoch=epoch)
        assert isinstance(loader, DeviceImageLoader)
        xs = torch.stack([dev.train_eval[i][0] for i in range(len(dev.train_eval))])
        tensors = TensorLoader(
            TensorSplit(xs, dev.train.labels), 50, shuffle=True, seed=11, epoch=epoch, drop_last=False
        )
        assert torch.equal(loader.order(), tensors.order())
        # un-augmented, the orders show in the images: DataLoader path == device path == tensor path
        dl = SeededDataLoader(
            synth.train_eval, 50, shuffle=True, seed=11, epoch=epoch, device=None, num_workers=0, drop_last=False
        )
        ours = make_loader(dev.train_eval, 50, shuffle=True, seed=11, epoch=epoch)
        for (a, ya), (b, yb), (c, yc) in zip(dl, ours, tensors):
            assert torch.allclose(a, b, atol=1e-6) and torch.equal(ya, yb) and torch.equal(b, c) and torch.equal(yb, yc)


def test_eval_is_plain_normalization_like_torchvision(synth: DataSplits, dev: DataSplits) -> None:
    for name in ("val", "test", "train_eval"):
        tv = torch.stack([getattr(synth, name)[i][0] for i in range(len(getattr(synth, name)))])
        ours = torch.cat([x for x, _ in make_loader(getattr(dev, name), 32, shuffle=False)])
        assert torch.allclose(tv, ours, atol=1e-6), name
        assert torch.allclose(getattr(dev, name)[5][0], tv[5], atol=1e-6)


def test_crop_flip_moves_a_marked_pixel_where_expected() -> None:
    pad, h, w, (r, c) = 4, 32, 32, (10, 20)
    combos = list(itertools.product(range(2 * pad + 1), range(2 * pad + 1), (False, True)))
    dy, dx, flip = (torch.tensor([k[i] for k in combos]) for i in range(3))
    images = torch.zeros(len(combos), 3, h, w, dtype=torch.uint8)
    images[:, 1, r, c] = 255
    out = crop_flip(images, dy, dx, flip, pad)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for k, (oy, ox, fl) in enumerate(combos):
        i, j = r + pad - oy, c + pad - ox  # crop at (oy, ox) of the padded image
        j = w - 1 - j if fl else j
        assert out[k, 1, i, j] == 255 and int(out[k].sum()) == 255, (oy, ox, fl)


def reference_crop_flip(
    images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """One sample at a time, with slicing (what the vectorized gather must equal)."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (pad, pad, pad, pad))
    out = [padded[b, :, dy[b] : dy[b] + h, dx[b] : dx[b] + w] for b in range(len(images))]
    return torch.stack([o.flip(-1) if f else o for o, f in zip(out, flip)])


def test_loader_batches_are_crop_flip_of_the_epoch_draws(dev: DataSplits) -> None:
    loader = make_loader(dev.train, 100, shuffle=True, seed=5, epoch=2)
    perm, (dy, dx, flip) = loader.order(), loader.augmentation()
    expected = dev.train.normalize(reference_crop_flip(dev.train.images[perm], dy[perm], dx[perm], flip[perm], 4))
    assert torch.equal(torch.cat([x for x, _ in loader]), expected)
    assert torch.equal(torch.cat([y for _, y in loader]), dev.train.labels[perm])


def test_augmentation_offsets_span_the_pad_and_half_flip() -> None:
    split = DeviceImageSplit(
        torch.zeros(4000, 3, 32, 32, dtype=torch.uint8), torch.zeros(4000), [0.5] * 3, [0.25] * 3, augment=True
    )
    dy, dx, flip = DeviceImageLoader(split, 128, shuffle=True, seed=0, epoch=0, drop_last=False).augmentation()
    assert set(dy.tolist()) == set(range(9)) and set(dx.tolist()) == set(range(9))
    assert 0.45 < flip.float().mean().item() < 0.55
    plain = DeviceImageLoader(split.with_augment(False), 128, shuffle=True, seed=0, epoch=0, drop_last=False)
    assert plain.augmentation() is None


def test_dataloader_augmentation_is_one_of_the_device_crops(synth: DataSplits, dev: DataSplits) -> None:
    """Same augmentation family: every torchvision-augmented image is one of the 162 crop/flips."""
    combos = list(itertools.product(range(9), range(9), (False, True)))
    dy, dx, flip = (torch.tensor([k[i] for k in combos]) for i in range(3))
    for i in (0, 17, 101):
        tv = synth.train[i][0]
        cands = dev.train.normalize(
            crop_flip(dev.train.images[i : i + 1].expand(len(combos), -1, -1, -1), dy, dx, flip, 4)
        )
        assert (cands - tv).abs().flatten(1).max(1).values.min() < 1e-5


def test_device_split_rejects_float_images_and_moves() -> None:
    with pytest.raises(ValueError, match="uint8"):
        DeviceImageSplit(torch.zeros(2, 3, 4, 4), torch.zeros(2), [0.0] * 3, [1.0] * 3)
    s = DeviceImageSplit(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2), [0.0] * 3, [1.0] * 3)
    assert s.to("cpu") is s and "augment=False" in repr(s)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batches_equal_cpu_batches(dev: DataSplits) -> None:
    gpu = dev.train.to("cuda")
    for (a, ya), (b, yb) in zip(epoch_batches(dev.train, 1), epoch_batches(gpu, 1)):
        assert b.device.type == "cuda" and torch.equal(a, b.cpu()) and torch.equal(ya, yb.cpu())


# ----------------------------------------------------------------------------- choosing the path


def test_use_device_images_modes(synth: DataSplits, tmp_path: Path) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_device_images("auto", cuda, synth) and not use_device_images("auto", cpu, synth)
    assert use_device_images("on", cpu, synth) and not use_device_images("off", cuda, synth)
    digits = build_splits("digits", storage_dir=str(tmp_path), seed=0)
    assert not use_device_images("auto", cuda, digits)
    with pytest.raises(ValueError, match="uint8 images"):
        use_device_images("on", cpu, digits)


def cfg_for(storage: Path, *extra: str):
    return load_config(
        QUICKSTART,
        [
            *tiny_overrides(storage),
            "data.name=synthetic_cifar10",
            "data.num_samples=120",
            "data.options.num_test=40",
            *extra,
        ],
    )


def test_load_splits_follows_device_data_and_logs(tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    on = load_splits(cfg_for(tmp_path, "data.device_data=on"), "cpu")
    assert isinstance(on.train, DeviceImageSplit) and on.train.augment
    off = load_splits(cfg_for(tmp_path, "data.device_data=off"), "cpu")
    auto = load_splits(cfg_for(tmp_path), "cpu")  # CPU: auto keeps the DataLoader path
    assert not isinstance(off.train, DeviceImageSplit) and not isinstance(auto.train, DeviceImageSplit)
    lines = [m for m in logs.messages if m.startswith("[data] synthetic_cifar10:")]
    assert (
        lines[0]
        == "[data] synthetic_cifar10: images resident on cpu, augmentation in batches there (data.device_data=on)"
    )
    assert lines[1:] == ["[data] synthetic_cifar10: DataLoader path (0 workers, batches copied to cpu)"] * 2


def test_bad_new_keys_are_one_line_config_errors(tmp_path: Path) -> None:
    for override, key in (
        ("precision=fp16", "'precision'"),
        ("data.device_data=gpu", "'data.device_data'"),
        ("channels_last=maybe", "'channels_last'"),
    ):
        with pytest.raises(ConfigError) as err:
            cfg_for(tmp_path, override)
        assert key in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert "did you mean 'bf16'" in str(pytest.raises(ConfigError, cfg_for, tmp_path, "precision=fp16").value)
    mnist = load_config(QUICKSTART, [*tiny_overrides(tmp_path), "data.device_data=on"])
    with pytest.raises(ConfigError, match="'data.device_data': 'on' needs"):
        load_splits(mnist)  # (preflight) mnist1d is not an image set
    assert set(PRECISIONS) == set(prec.PRECISIONS) and set(DEVICE_DATA_MODES) == set(DATA_MODES)


# ----------------------------------------------------------------------------- precision


def test_bf16_channels_last_train_epoch_on_cpu(dev: DataSplits) -> None:
    torch.manual_seed(0)
    model = prec.prepare_model(create_model("resnet8", num_classes=10, input_shape=(3, 32, 32)), True)
    conv = next(p for p in model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    seen: list[tuple[torch.dtype, bool]] = []

    def loss_fn(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append((logits.dtype, x.is_contiguous(memory_format=torch.channels_last)))
        return F.cross_entropy(logits, y)

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    res = train_epoch(
        model,
        make_loader(dev.train, 64, shuffle=True, seed=0, epoch=0),
        opt,
        loss_fn,
        torch.device("cpu"),
        precision="bf16",
        channels_last=True,
    )
    assert seen and all(s == (torch.bfloat16, True) for s in seen)
    assert conv.dtype == torch.float32 and torch.isfinite(torch.tensor(res.loss))
    with pytest.raises(ValueError, match="fp16"):
        prec.autocast("cpu", "fp16")


# ----------------------------------------------------------------------------- teachers, both paths


@pytest.mark.parametrize(
    "extra",
    [
        ["data.device_data=on"],
        ["data.device_data=off"],
        ["data.device_data=on", "precision=bf16", "channels_last=true"],
    ],
    ids=["device", "dataloader", "device-bf16-cl"],
)
def test_teacher_epoch_on_synthetic_cifar10(tmp_path: Path, extra: list[str], logs: pytest.LogCaptureFixture) -> None:
    storage = tmp_path / "runs"
    overrides = [
        *tiny_overrides(storage),
        "cluster.mode=local",
        "data.name=synthetic_cifar10",
        "data.num_samples=256",
        "data.options.num_test=64",
        "teacher.archs=[resnet8]",
        "teacher.seeds=[0]",
        "teacher.epochs=1",
        "teacher.checkpoint_every=1",
        "data.batch_size=64",
        "data.eval_batch_size=128",
        *extra,
    ]
    assert main(["teachers", str(QUICKSTART), *overrides]) == 0
    m = CheckpointStore(storage, "quickstart").trajectory("resnet8-synthetic_cifar10-s0").manifest()
    assert m["finished"] and [c["epoch"] for c in m["checkpoints"]] == [1]
    assert 0.0 <= m["checkpoints"][0]["test_acc"] <= 1.0 and len(m["history"]) == 1
    on = "data.device_data=on" in extra
    assert any(("images resident on cpu" if on else "DataLoader path") in line for line in logs.messages)
    # device_data (like precision) is an execution choice: the trajectory's config hash ignores it
    assert "device_data" not in json.dumps(m["config"])
