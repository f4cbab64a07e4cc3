"""Fair share of this machine's cores among the harness processes running on it.

Each process that trains in-process (``--local``, ``ckd distill``) holds a slot: a lock file
``<tmp>/ckd-cpu-slots/<pid>`` under ``flock`` (released by the OS when the process dies). Its
torch thread count is then ``cores // live slots`` (at least 1), read when each trajectory or
student starts (not mid-run, which could change float reductions), so two concurrent runs on a
2-core machine get one thread each instead of fighting with two each (measured about 100x
slower per student epoch when oversubscribed). Ray workers never use this:
they take the CPUs Ray gave them (``cluster.*.cpus``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

SLOTS = Path(os.environ.get("CKD_CPU_SLOTS", Path(tempfile.gettempdir()) / "ckd-cpu-slots"))
_held: dict[str, object] = {}


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def claim_slot() -> None:
    """Hold this process's slot (once per process; released at exit or death)."""
    if "fh" in _held:
        return
    SLOTS.mkdir(parents=True, exist_ok=True)
    fh = open(SLOTS / str(os.getpid()), "a+")
    fcntl.flock(fh, fcntl.LOCK_EX)
    _held["fh"] = fh
    atexit.register(release_slot)


def release_slot() -> None:
    fh = _held.pop("fh", None)
    if fh is not None:
        with contextlib.suppress(OSError):
            Path(fh.name).unlink()
        fh.close()


def live_slots() -> int:
    """Slots held by live processes (a slot whose lock can be taken is stale and is removed)."""
    live = 0
    for path in SLOTS.glob("[0-9]*") if SLOTS.is_dir() else []:
        if "fh" in _held and path.name == str(os.getpid()):
            live += 1
            continue
        try:
            with open(path, "a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)  # its holder is gone
        except OSError:
            live += 1  # locked: a live process
    return max(live, 1)


def fair_threads() -> int:
    """Torch threads for this process: its share of the cores among the live slots."""
    claim_slot()
    return max(1, available_cores() // live_slots())
