"""CIFAR dataset classes that check the files exist but skip torchvision's md5 checks.

Used for ``verify=False`` (e.g. re-packed or test-fixture files). Kept in its own module so
that torchvision is imported only when a torchvision-backed set is actually built, and so that
the classes pickle by reference (DataLoader workers, Ray).
"""

from __future__ import annotations

import pickle
from pathlib import Path

from torchvision import datasets


class UncheckedCIFAR10(datasets.CIFAR10):
    """``torchvision.datasets.CIFAR10`` without the md5 checks (files must still exist)."""

    def _check_integrity(self) -> bool:
        folder = Path(self.root, self.base_folder)
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        with open(Path(self.root, self.base_folder, self.meta["filename"]), "rb") as fh:
            self.classes = pickle.load(fh, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class UncheckedCIFAR100(UncheckedCIFAR10):
    """``torchvision.datasets.CIFAR100`` without the md5 checks (files must still exist)."""

    base_folder = datasets.CIFAR100.base_folder
    url = datasets.CIFAR100.url
    filename = datasets.CIFAR100.filename
    tgz_md5 = datasets.CIFAR100.tgz_md5
    train_list = datasets.CIFAR100.train_list
    test_list = datasets.CIFAR100.test_list
    meta = datasets.CIFAR100.meta
