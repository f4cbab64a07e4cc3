"""Test helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

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


def wait_for(pred, timeout: float = 60.0, every: float = 0.05):
    """Poll ``pred`` until it returns something truthy (returned), or fail after ``timeout`` s."""
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


class LogLines(logging.Handler):
    """Collects the ``harness`` log messages while attached (usable where ``caplog`` is not: a
    module-scoped fixture); ``text()`` joins them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def text(self) -> str:
        return "\n".join(self.messages)

    def __enter__(self) -> LogLines:
        log = logging.getLogger("harness")
        if log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)
        log.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger("harness").removeHandler(self)
