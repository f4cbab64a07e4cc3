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


def valid_row(run_id: str, **values: object) -> dict:
    """A result row of the schema a stored row must have (harness/row_schema.py), for tests of
    the results table (its run id is not a config's: reports count rows by their honest id)."""
    return {
        "run_id": run_id,
        "experiment": "exp",
        "dataset": "mnist1d",
        "teacher_choice": "full",
        "teacher_arch": "cnn1d_small",
        "teacher_seed": 0,
        "teacher_checkpoints": [{"trajectory": "cnn1d_small-mnist1d-s0", "epoch": 4}],
        "student_arch": "mlp_small",
        "seed": 0,
        "temperature": 4.0,
        "kd_weight": 0.5,
        "ensemble_reduce": "probs",
        "epochs": 2,
        "teacher_val_acc": 0.9,
        "teacher_test_acc": 0.9,
        "final_val_acc": 0.5,
        "final_test_acc": 0.5,
        "best_val_acc": 0.6,
        "best_val_epoch": 1,
        "test_acc_at_best_val": 0.55,
        "val_acc_per_epoch": [0.6, 0.5],
        "test_acc_per_epoch": [0.55, 0.5],
        "wall_time_s": 1.0,
        "pack_size": 1,
        "device": "cpu",
        **values,
    }


def private_copy(trained: Path, tmp_path: Path) -> Path:
    """A private copy of a module's trained store (what one test writes does not leak)."""
    import shutil

    dst = tmp_path / "runs"
    shutil.copytree(trained, dst)
    return dst


def assert_refused_in_one_line(capsys, argv: list[str], storage: Path, expected: str) -> None:
    """``ckd <argv>`` exits 2 with one stderr line holding ``expected``, and writes nothing under ``storage``."""
    from harness.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not storage.exists()
