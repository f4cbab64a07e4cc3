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


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 API server on localhost for the whole session (tests/s3_server.py)."""
    from tests.s3_server import start_s3_server

    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture
def s3_storage(s3_server) -> str:
    """``s3://<fresh bucket>/runs``: a storage URI no other test shares."""
    return f"s3://{s3_server.new_bucket()}/runs"
