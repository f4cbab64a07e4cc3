"""File-backed image sets read with torchvision: CIFAR-10/100, ImageFolder trees, Tiny-ImageNet.

Each builder loads the training files once (transform-free) and exposes three views of them:
``train`` (augmenting transform) and ``val`` / ``train_eval`` (plain transform), as
``Subset``s of ``TransformView``s over that one object, so CIFAR sits in memory once. Val is
carved from the training set with a seeded stratified split; the test set is separate.
torchvision is imported lazily (only when such a set is built), so importing ``harness.data``
stays fast for runs on the embedded data. Nothing is downloaded unless ``download=True``
(CIFAR only); missing files raise a ``FileNotFoundError`` that says which path and layout
were expected.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Subset

from .catalog import register_dataset
from .splits import DataSplits, TransformView, carve_val

logger = logging.getLogger(__name__)

CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TINY_IMAGENET_MEAN, TINY_IMAGENET_STD = (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)


def carve_views(
    pool: Any, labels: Sequence[int], plain: Any, augmenting: Any | None, val_fraction: float, seed: int
) -> tuple[Subset, Subset, Subset]:
    """(train, val, train_eval) subsets of ``pool``; train and train_eval share positions.

    ``pool`` holds the images once (CIFAR-style pools with ``.data``/``.targets`` can later be
    moved to the device whole, see ``harness.data.device_images``)."""
    tr, va = carve_val(np.asarray(labels), val_fraction, seed)
    plain_view = TransformView(pool, plain)
    train_view = TransformView(pool, augmenting) if augmenting is not None else plain_view
    return (
        Subset(train_view, tr.tolist()),
        Subset(plain_view, va.tolist()),
        Subset(plain_view, tr.tolist()),
    )


# ----------------------------------------------------------------------------- CIFAR


# name -> (folder under root, data files, meta file, classes); mirrors torchvision's CIFAR classes.
_CIFAR_FILES = {
    "cifar10": (
        "cifar-10-batches-py",
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"],
        "batches.meta",
        10,
    ),
    "cifar100": ("cifar-100-python", ["train", "test"], "meta", 100),
}


def _cifar_class(name: str, verify: bool) -> Any:
    from torchvision import datasets

    from ._cifar_files import UncheckedCIFAR10, UncheckedCIFAR100

    if name == "cifar10":
        return datasets.CIFAR10 if verify else UncheckedCIFAR10
    return datasets.CIFAR100 if verify else UncheckedCIFAR100


def cifar_transforms(name: str, augment: bool) -> tuple[Any, Any | None]:
    """(plain, augmenting or None): the paper's 4-px pad + random 32 crop + flip, then normalize."""
    return crop_flip_transforms(CIFAR_MEAN[name], CIFAR_STD[name], augment)


def crop_flip_transforms(
    mean: Sequence[float], std: Sequence[float], augment: bool, size: int = 32, padding: int = 4
) -> tuple[Any, Any | None]:
    """(plain, augmenting or None) for CIFAR-shaped images: ``padding``-px zero pad + random
    ``size`` crop + horizontal flip, then ToTensor + Normalize(mean, std) (plain: only the latter).
    ``harness.data.device_images`` does the same on tensors, on the device."""
    from torchvision import transforms

    normalize = [transforms.ToTensor(), transforms.Normalize(tuple(mean), tuple(std))]
    plain = transforms.Compose(normalize)
    if not augment:
        return plain, None
    aug = transforms.Compose(
        [transforms.RandomCrop(size, padding=padding), transforms.RandomHorizontalFlip(), *normalize]
    )
    return plain, aug


def _cifar_expected(name: str) -> list[str]:
    """The file names that make up an extracted CIFAR python release (data batches, then meta)."""
    _, data_files, meta_file, _ = _CIFAR_FILES[name]
    return [*data_files, meta_file]


def _locate_cifar(name: str, root: str | None, storage_dir: str, download: bool) -> tuple[str | None, str, list[str]]:
    """``(root, where, missing)``: the root to read (``<storage_dir>/<name>`` when downloading
    without one), the folder as a message shows it, and the expected files not there."""
    folder, expected = _CIFAR_FILES[name][0], _cifar_expected(name)
    if root is None and download:
        root = os.path.join(storage_dir, name)
    where = f"{root}/{folder}" if root is not None else f"<data.root>/{folder}"
    missing = expected if root is None else [n for n in expected if not Path(root, folder, n).is_file()]
    return root, where, missing


def _missing_cifar_error(name: str, root: str | None, where: str, missing: list[str]) -> FileNotFoundError:
    """The error for CIFAR files that are not there (and may not be downloaded): what, where, how."""
    expected = _cifar_expected(name)
    return FileNotFoundError(
        f"{name}: expected the extracted CIFAR python files at {where} "
        f"({', '.join(expected)}); "
        + ("none of them found" if missing == expected else f"missing: {', '.join(missing)}")
        + ("" if root is not None else " (data.root is not set)")
        + ". Put the extracted CIFAR python files there or set data.download=true (needs network)."
    )


def _load_cifar(name: str, root: str | None, where: str, download: bool, verify: bool) -> tuple[Any, Any]:
    """``(train pool, test pool)``, transform-free; a failed md5 check says how to get past it."""
    cls = _cifar_class(name, verify)
    try:
        train_pool = cls(root, train=True, download=download)
        test_pool = cls(root, train=False, download=False)
    except RuntimeError as exc:  # torchvision's md5 check failed
        raise RuntimeError(
            f"{name}: files under {where} are corrupted or not the official release ({exc}); "
            "re-extract them, or pass verify=false to skip the md5 check"
        ) from exc
    return train_pool, test_pool


def _build_cifar(
    name: str,
    *,
    root: str | None,
    storage_dir: str,
    seed: int,
    val_fraction: float,
    augment: bool,
    download: bool,
    verify: bool,
) -> DataSplits:
    """CIFAR-10/100 splits: find (or download) the files, load them once, carve val (module doc)."""
    root, where, missing = _locate_cifar(name, root, storage_dir, download)
    if missing and not download:
        raise _missing_cifar_error(name, root, where, missing)
    if missing:
        logger.info("[data] %s: downloading the CIFAR python files to %s (data.download=true) ...", name, root)
    train_pool, test_pool = _load_cifar(name, root, where, download, verify)
    logger.info("[data] %s from %s (%d train, %d test images)", name, where, len(train_pool), len(test_pool))
    plain, aug = cifar_transforms(name, augment)
    train, val, train_eval = carve_views(train_pool, train_pool.targets, plain, aug, val_fraction, seed)
    return DataSplits(
        train=train,
        val=val,
        test=TransformView(test_pool, plain),
        num_classes=_CIFAR_FILES[name][3],
        input_shape=(3, 32, 32),
        train_eval=train_eval,
        augmented=aug is not None,
        info={"mean": list(CIFAR_MEAN[name]), "std": list(CIFAR_STD[name]), "root": str(root)},
    )


@register_dataset("cifar10")
def build_cifar10(
    *,
    root: str | None,
    storage_dir: str,
    seed: int,
    val_fraction: float,
    augment: bool,
    download: bool,
    verify: bool = True,
) -> DataSplits:
    """CIFAR-10 from ``<root>/cifar-10-batches-py``; ``verify`` runs torchvision's md5 checks."""
    return _build_cifar(
        "cifar10",
        root=root,
        storage_dir=storage_dir,
        seed=seed,
        val_fraction=val_fraction,
        augment=augment,
        download=download,
        verify=verify,
    )


@register_dataset("cifar100")
def build_cifar100(
    *,
    root: str | None,
    storage_dir: str,
    seed: int,
    val_fraction: float,
    augment: bool,
    download: bool,
    verify: bool = True,
) -> DataSplits:
    """CIFAR-100 (fine labels) from ``<root>/cifar-100-python``; ``verify`` runs the md5 checks."""
    return _build_cifar(
        "cifar100",
        root=root,
        storage_dir=storage_dir,
        seed=seed,
        val_fraction=val_fraction,
        augment=augment,
        download=download,
        verify=verify,
    )


# ----------------------------------------------------------------------------- ImageFolder

IMAGEFOLDER_LAYOUT = "<root>/train/<class>/*.png|jpg and <root>/val/<class>/... (or <root>/test/<class>/...)"
TINY_IMAGENET_LAYOUT = (
    "<root>/train/<wnid>/images/*.JPEG and <root>/val/<wnid>/*.JPEG, i.e. the extracted tiny-imagenet-200 "
    "folder with val/ re-organized by harness.data.reorganize_tiny_imagenet_val(root)"
)


def folder_transforms(
    image_size: int, mean: Sequence[float], std: Sequence[float], augment: bool
) -> tuple[Any, Any | None]:
    """(plain, augmenting or None): resize + center crop to ``image_size``; augmentation adds
    RandomCrop(image_size, padding=image_size // 8) and a horizontal flip."""
    from torchvision import transforms

    base = [transforms.Resize(image_size), transforms.CenterCrop(image_size)]
    tail = [transforms.ToTensor(), transforms.Normalize(tuple(mean), tuple(std))]
    plain = transforms.Compose(base + tail)
    if not augment:
        return plain, None
    aug = transforms.Compose(
        base + [transforms.RandomCrop(image_size, padding=image_size // 8), transforms.RandomHorizontalFlip()] + tail
    )
    return plain, aug


def reorganize_tiny_imagenet_val(root: str | os.PathLike[str]) -> int:
    """Move Tiny-ImageNet's ``val/images/*.JPEG`` into ``val/<wnid>/`` using ``val_annotations.txt``.

    The official archive ships val as one flat folder plus an annotation file; ImageFolder
    needs one subfolder per class. Runs locally (no network), is idempotent, and returns the
    number of files moved. The annotation file is kept.
    """
    val = Path(root, "val")
    ann = val / "val_annotations.txt"
    images = val / "images"
    if not ann.is_file():
        raise FileNotFoundError(f"{ann} not found; is {root} an extracted tiny-imagenet-200 folder?")
    moved = 0
    for line in ann.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        src = images / parts[0]
        if src.is_file():
            (val / parts[1]).mkdir(exist_ok=True)
            os.replace(src, val / parts[1] / parts[0])
            moved += 1
    if images.is_dir() and not any(images.iterdir()):
        images.rmdir()
    return moved


def _class_dirs(path: Path) -> list[str]:
    """Names of the subfolders of ``path`` (one per class), sorted as ImageFolder sorts them."""
    return sorted(e.name for e in os.scandir(path) if e.is_dir())


def _locate_folder(kind: str, root: str | None, download: bool, test_dir: str | None) -> tuple[str, Path, str]:
    """``(root, test path, test_dir)`` of an ImageFolder tree at ``root``; raises if a folder is missing.

    ``test_dir`` defaults to ``test`` when ``<root>/test`` exists, else ``val``.
    """
    layout = TINY_IMAGENET_LAYOUT if kind == "tiny_imagenet" else IMAGEFOLDER_LAYOUT
    if download:
        raise ValueError(f"{kind} cannot be downloaded; put the files under data.root ({layout})")
    if root is None or not Path(root, "train").is_dir():
        where = "data.root is not set" if root is None else f"{Path(root, 'train')} does not exist"
        raise FileNotFoundError(f"{kind}: {where}; expected the layout {layout}")
    if test_dir is None:
        test_dir = "test" if Path(root, "test").is_dir() else "val"
    test_path = Path(root, test_dir)
    if not test_path.is_dir():
        raise FileNotFoundError(f"{kind}: {test_path} does not exist; expected the layout {layout}")
    return root, test_path, test_dir


def _check_class_folders(kind: str, root: str, test_path: Path, test_dir: str, expected_classes: int | None) -> None:
    """Raise ValueError unless train/ and the test folder hold the same (expected number of) classes."""
    train_path = Path(root, "train")
    train_classes, test_classes = _class_dirs(train_path), _class_dirs(test_path)
    if (test_path / "val_annotations.txt").is_file() and (test_path / "images").is_dir():
        raise ValueError(
            f"{kind}: {test_path} is Tiny-ImageNet's flat val folder (images/ + val_annotations.txt); "
            "ImageFolder needs one subfolder per class. Re-organize it once with "
            f"harness.data.reorganize_tiny_imagenet_val({str(root)!r}) (moves files locally)."
        )
    if test_classes != train_classes:
        only_train = sorted(set(train_classes) - set(test_classes))[:5]
        only_test = sorted(set(test_classes) - set(train_classes))[:5]
        raise ValueError(
            f"{kind}: class folders of {test_path} differ from those of {train_path} "
            f"(only in train: {only_train}, only in {test_dir}: {only_test}); labels would not line up"
        )
    if expected_classes is not None and len(train_classes) != expected_classes:
        raise ValueError(
            f"{kind}: expected {expected_classes} class folders in {train_path}, "
            f"found {len(train_classes)} (set expected_classes to match, or null to skip this check)"
        )


def _build_folder(
    kind: str,
    *,
    root: str | None,
    seed: int,
    val_fraction: float,
    augment: bool,
    download: bool,
    image_size: int,
    test_dir: str | None,
    mean: Sequence[float],
    std: Sequence[float],
    expected_classes: int | None,
) -> DataSplits:
    """ImageFolder splits: check the tree, load train/ and the test folder once, carve val."""
    root, test_path, test_dir = _locate_folder(kind, root, download, test_dir)
    _check_class_folders(kind, root, test_path, test_dir, expected_classes)
    image_size = int(image_size)
    plain, aug = folder_transforms(image_size, mean, std, augment)
    from torchvision import datasets

    train_pool = datasets.ImageFolder(str(Path(root, "train")))
    test_pool = datasets.ImageFolder(str(test_path))
    logger.info(
        "[data] %s from %s: %d train images in %d classes (train/), %d test images (%s/)",
        kind,
        root,
        len(train_pool),
        len(train_pool.classes),
        len(test_pool),
        test_dir,
    )
    train, val, train_eval = carve_views(train_pool, train_pool.targets, plain, aug, val_fraction, seed)
    return DataSplits(
        train=train,
        val=val,
        test=TransformView(test_pool, plain),
        num_classes=len(train_pool.classes),
        input_shape=(3, image_size, image_size),
        train_eval=train_eval,
        augmented=aug is not None,
        info={
            "mean": list(mean),
            "std": list(std),
            "root": str(root),
            "test_dir": test_dir,
            "classes": list(train_pool.classes),
        },
    )


@register_dataset("imagefolder")
def build_imagefolder(
    *,
    root: str | None,
    storage_dir: str,
    seed: int,
    val_fraction: float,
    augment: bool,
    download: bool,
    image_size: int = 64,
    test_dir: str | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    expected_classes: int | None = None,
) -> DataSplits:
    """Any ImageFolder tree (``IMAGEFOLDER_LAYOUT``); ``test_dir`` defaults to test/ if present, else val/."""
    return _build_folder(
        "imagefolder",
        root=root,
        seed=seed,
        val_fraction=val_fraction,
        augment=augment,
        download=download,
        image_size=image_size,
        test_dir=test_dir,
        mean=mean,
        std=std,
        expected_classes=expected_classes,
    )


@register_dataset("tiny_imagenet")
def build_tiny_imagenet(
    *,
    root: str | None,
    storage_dir: str,
    seed: int,
    val_fraction: float,
    augment: bool,
    download: bool,
    image_size: int = 64,
    mean: Sequence[float] = TINY_IMAGENET_MEAN,
    std: Sequence[float] = TINY_IMAGENET_STD,
    expected_classes: int | None = 200,
) -> DataSplits:
    """Tiny-ImageNet-200 at ``root`` (the extracted ``tiny-imagenet-200`` folder), 64x64, 200 classes.

    Its labelled ``val/`` is the test set (the official test/ has no labels) and must first be
    re-organized into class subfolders with ``reorganize_tiny_imagenet_val(root)``.
    """
    return _build_folder(
        "tiny_imagenet",
        root=root,
        seed=seed,
        val_fraction=val_fraction,
        augment=augment,
        download=download,
        image_size=image_size,
        test_dir="val",
        mean=mean,
        std=std,
        expected_classes=expected_classes,
    )
