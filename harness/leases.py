"""Run leases: one student run trains in one process at a time, whoever started it.

Two ``ckd sweep`` / ``ckd run`` on one experiment (or their Ray trial workers) each plan the runs
without a row and would train them all twice. Before a run trains, the process takes its lease: a
non-blocking exclusive ``flock`` on ``<storage>/<name>/results/leases/<run_id>.lock``
(``fileio.exclusive_lock``: no symlinks followed, the holder's ``pid N on host`` written in it),
held until the run's row is recorded. A run whose lease another process holds is skipped with one
log line naming the holder; the OS releases a lease when its holder dies, so a later attempt (or
a process waiting for it) picks the run up. Once a lease is taken, the row is looked up again: the
holder may have recorded it just before letting go. Lease files are left in place (removing one
could race a process that has just opened it); they hold nothing but the last holder's name.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from harness.fileio import exclusive_lock
from harness.objects import location

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LeaseBusy(Exception):
    """Another live process holds the lease (``holder`` names it)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def lease_path(root: Path, run_id: str) -> Path:
    """The lease file of ``run_id`` in the experiment folder ``root``."""
    return location(root) / "results" / "leases" / f"{run_id}.lock"


def _refuse(holder: str) -> None:
    raise LeaseBusy(holder)


@contextlib.contextmanager
def take_leases(root: Path, run_ids: Sequence[str]) -> Iterator[tuple[list[str], dict[str, str]]]:
    """Take every free lease of ``run_ids`` without waiting; yields ``(held, busy)`` with ``busy``
    mapping each run id held elsewhere to its holder. The held leases are released on exit."""
    held: list[str] = []
    busy: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for rid in run_ids:
            try:
                stack.enter_context(exclusive_lock(lease_path(root, rid), waiting=_refuse))
                held.append(rid)
            except LeaseBusy as e:
                busy[rid] = e.holder
                logger.info(f"[distill] run {rid} is being trained by {e.holder}; skipping it here")
        yield held, busy


def wait_for_lease(root: Path, run_id: str) -> None:
    """Block until the process that holds ``run_id``'s lease lets go (it recorded the row or died)."""

    def waiting(holder: str) -> None:
        logger.info(f"[distill] waiting for {holder} to finish run {run_id}")

    with exclusive_lock(lease_path(root, run_id), waiting=waiting):
        pass


def train_leased(
    store: Any, todo: Mapping[str, T], train: Callable[[list[T]], dict[str, dict]], wait: bool = True
) -> dict[str, dict]:
    """Train the runs of ``todo`` (by run id) that no other process is training, in one call of
    ``train`` per round, each under its lease; returns the rows by run id. Runs held elsewhere are
    waited for when ``wait`` (their row is then read, or they are trained here if the holder died
    without one), else left out. ``store`` has ``root`` and ``results.find(run_id)``."""
    rows: dict[str, dict] = {}
    pending = dict(todo)
    while pending:
        with take_leases(store.root, list(pending)) as (held, busy):
            for rid in held:
                row = store.results.find(rid)  # recorded by a holder that has just let go
                if row is not None:
                    rows[rid] = row
                    logger.info(f"[distill] run {rid} was recorded by another process meanwhile; skipping")
            fresh = [pending[rid] for rid in held if rid not in rows]
            if fresh:
                rows.update(train(fresh))
        pending = {rid: pending[rid] for rid in busy}
        if not pending or not wait:
            break
        wait_for_lease(store.root, next(iter(pending)))
    return rows
