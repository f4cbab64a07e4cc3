"""Shared fixtures: the real quickstart config, shrunk to seconds (tiny data, 1-4 epochs).

Helpers that tests import (``QUICKSTART``, ``tiny_overrides``, ``wait_for``) live in
``tests/helpers.py``; log output is asserted with pytest's ``caplog`` fixture.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.helpers import tiny_overrides

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture
def tiny(tmp_path: Path) -> list[str]:
    return tiny_overrides(tmp_path / "runs")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog`` capturing every INFO line of the harness (``logs.text``, ``logs.messages``)."""
    caplog.set_level(logging.INFO, logger="harness")
    return caplog
