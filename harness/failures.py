"""Runs that did not train: skipped before launch (with the reason) or failed (with a traceback).

One failure stays one failure: a run whose teacher cannot be resolved (a degenerate or failed
selection, a missing trajectory) is skipped before any student starts; a member that raises while
its pack trains fails alone. Either way a record lands in ``<storage>/<name>/failures/``:

* ``<key>.json``: the run (its grid point), its label ``<choice>/<student>/s<seed>``, the status
  (``skipped`` | ``failed``), a one-line reason, the stage, whether the error is deterministic
  (retrying cannot help) and the log file;
* ``<key>.log``: the traceback (failed runs), in the experiment's folder, never a temporary one.

``key`` is a hash of the grid point (a run that cannot be resolved has no run id). A run that
later records a result row has its record removed (``clear``). The report, ``ckd status`` and
the exit status of ``ckd run`` / ``ckd sweep`` read them with ``read_failures``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.fileio import StoredFileError, UnsafeFileError, atomic_write_bytes, read_json_object
from harness.objects import ObjectPath, location

logger = logging.getLogger(__name__)
STATUSES = ("skipped", "failed")
MAX_RECORD_BYTES = 1 << 20
RUN_KEYS = ("teacher_arch", "teacher_seed", "student_arch", "teacher_choice", "temperature", "kd_weight", "seed")


class RunFailure(Exception):
    """A run that cannot train, with a one-line reason; ``deterministic``: a retry cannot help."""

    def __init__(self, reason: str, deterministic: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.deterministic = reason, deterministic


def run_label(run: Mapping[str, Any]) -> str:
    """``<choice>/<student>/s<seed>``: how a run is named on the console, in W&B and in the report."""
    return f"{run.get('teacher_choice')}/{run.get('student_arch')}/s{run.get('seed')}"


def run_key(run: Mapping[str, Any]) -> str:
    """A stable file name for a grid point (its Run fields), whether or not it resolves."""
    canon = json.dumps({k: run.get(k) for k in RUN_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def failures_dir(root: Path | ObjectPath) -> Path | ObjectPath:
    """``<root>/failures``: a folder, or a prefix on an object store (records are whole objects)."""
    return location(root) / "failures"


def reason_of(error: BaseException, last: bool = False) -> str:
    """One line for an error: ``Type: first line of its message`` (``last``: its last line, for
    a wrapped error whose cause ends the text, e.g. Tune's)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1 if last else 0]}" if lines else type(error).__name__


def is_deterministic(error: BaseException) -> bool:
    """Would the same inputs fail the same way? Everything but I/O, memory and connection errors:
    training is bit-reproducible, so a Python error repeats on a retry."""
    if isinstance(error, RunFailure):
        return error.deterministic
    transient = (MemoryError, ConnectionError, TimeoutError, InterruptedError)
    if isinstance(error, transient):
        return False
    if isinstance(error, OSError) and not isinstance(error, (FileNotFoundError, PermissionError)):
        return False
    return "out of memory" not in str(error).lower()


def record(
    root: Path,
    run: Mapping[str, Any],
    status: str,
    reason: str,
    *,
    stage: str = "sweep",
    error: BaseException | None = None,
    run_id: str | None = None,
) -> dict:
    """Write (or overwrite) the record of ``run``; a failed run's traceback goes to ``<key>.log``."""
    if status not in STATUSES:
        raise ValueError(f"failure status {status!r}: use one of {', '.join(STATUSES)}")
    folder, key = failures_dir(root), run_key(run)
    folder.mkdir(parents=True, exist_ok=True)
    log = None
    if error is not None:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        atomic_write_bytes(folder / f"{key}.log", f"{run_label(run)}: {reason}\n\n{text}".encode())
        log = f"failures/{key}.log"
    entry = {
        "key": key,
        "label": run_label(run),
        "run": {k: run.get(k) for k in RUN_KEYS},
        "run_id": run_id,
        "status": status,
        "stage": stage,
        "reason": " ".join(str(reason).split()),
        "deterministic": True if error is None else is_deterministic(error),
        "log": log,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(folder / f"{key}.json", json.dumps(entry, indent=1).encode())
    return entry


def clear(root: Path, runs: Iterable[Mapping[str, Any]], status: str | None = None) -> int:
    """Remove the records of ``runs`` (they trained after all; ``status``: only records with
    that status); how many were removed."""
    removed = 0
    folder = failures_dir(root)
    for run in runs:
        path = folder / f"{run_key(run)}.json"
        if not path.is_file() or path.is_symlink():
            continue
        if status is not None:
            try:
                if read_json_object(path, MAX_RECORD_BYTES, "failure record").get("status") != status:
                    continue
            except (StoredFileError, UnsafeFileError, ValueError):
                pass  # unreadable: removed
        path.unlink()
        removed += 1
        log = path.with_suffix(".log")
        if log.is_file() and not log.is_symlink():
            log.unlink()
    return removed


def read_failures(root: Path, runs: Iterable[Mapping[str, Any]] | None = None) -> list[dict]:
    """The records (of ``runs`` only, when given), skipped first, then failed, by label. A record
    that cannot be read is reported as a warning and left out."""
    folder = failures_dir(root)
    if not folder.is_dir():
        return []
    wanted = None if runs is None else {run_key(r) for r in runs}
    out = []
    for path in sorted(folder.glob("*.json")):
        if wanted is not None and path.stem not in wanted:
            continue
        try:
            entry = read_json_object(path, MAX_RECORD_BYTES, "failure record")
        except (StoredFileError, UnsafeFileError, ValueError) as e:
            logger.warning(f"[failures] {path} is not a readable record ({e}); left out")
            continue
        if entry.get("status") in STATUSES:
            out.append(entry)
    return sorted(out, key=lambda e: (e["status"] != "skipped", str(e.get("label"))))
