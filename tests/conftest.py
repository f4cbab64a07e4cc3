"""Shared fixtures: the real quickstart config, shrunk to seconds (tiny data, 1-4 epochs)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def tiny_overrides(storage: Path, **extra: object) -> list[str]:
    """Overrides that shrink configs/quickstart.yaml to a few seconds of real training."""
    base = {
        "storage": str(storage),
        "data.num_samples": 4000,
        "data.eval_batch_size": 512,
        "teacher.seeds": "[0,1]",
        "teacher.epochs": 4,
        "teacher.checkpoint_every": 2,
        "student.epochs": 2,
        "tracking.mode": "disabled",
        "threads": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


class Lines(list):
    """A ``log`` callable that keeps the lines, for asserting on progress output."""

    def __call__(self, msg: str) -> None:
        self.append(msg)

    def text(self) -> str:
        return "\n".join(self)


def wait_for(pred, timeout: float = 60.0, every: float = 0.05):
    """Poll ``pred`` until it returns something truthy (returned), or fail after ``timeout`` s."""
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def tiny(tmp_path: Path) -> list[str]:
    return tiny_overrides(tmp_path / "runs")
