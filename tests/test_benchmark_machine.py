"""benchmarks/machine.py: every benchmark JSON records the machine and its measured matmul rate."""

from __future__ import annotations

import datetime
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402


def test_machine_info_keys_rate_and_threads_restored() -> None:
    before = torch.get_num_threads()
    info = machine_info(1, cuda=False)
    assert {"matmul_gflops", "threads", "cpu", "cores", "torch", "date"} <= info.keys()
    assert info["threads"] == 1  # measured at the requested count ...
    assert torch.get_num_threads() == before  # ... and the caller's setting is back
    assert math.isfinite(info["matmul_gflops"]) and info["matmul_gflops"] > 0
    assert info["cpu"] and info["cores"] and info["torch"] == torch.__version__
    assert datetime.datetime.fromisoformat(info["date"]).tzinfo is not None
    assert "cuda" not in info
    json.dumps(info)  # goes into a benchmark's JSON as is


def test_machine_info_default_threads_is_current_setting() -> None:
    before = torch.get_num_threads()
    assert machine_info(cuda=False)["threads"] == before == torch.get_num_threads()


def test_thread_count_restored_when_measurement_fails(monkeypatch) -> None:
    import benchmarks.machine as machine

    before = torch.get_num_threads()

    def boom() -> float:
        raise RuntimeError("matmul failed")

    monkeypatch.setattr(machine, "cpu_matmul_gflops", boom)
    with pytest.raises(RuntimeError, match="matmul failed"):
        machine.machine_info(before + 1, cuda=False)
    assert torch.get_num_threads() == before


def test_cli_prints_the_json(monkeypatch, capsys) -> None:
    import benchmarks.machine as machine

    monkeypatch.setattr(sys, "argv", ["machine.py", "--threads", "1", "--no-cuda"])
    machine.main()
    assert json.loads(capsys.readouterr().out)["threads"] == 1
