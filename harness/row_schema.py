"""The schema of a result row file: the keys ``ResultRow.to_dict`` writes, their types and ranges.

A row file is the truth of one finished run (``harness/results.py``), so a reader counts it only
if it is one JSON object shaped like what ``harness/runs.py``'s ``ResultRow`` writes: the
required keys with their types, every accuracy a finite number in [0, 1], ``epochs >= 1``, the
best epoch one of them, finite floats (``NaN``/``Infinity`` parse as JSON but are no result).
Keys that rows of older versions may lack (``pack_size``, ``device``, ``wall_time_s``, the
per-epoch curves, ``inputs``, ``environment``, ``weights_sha256``, ``digest``) are checked when
present; ``test_acc_per_epoch`` has null at the epochs test was not evaluated on (since issue 22,
all but the final and best-val ones), older rows a number every epoch. Anything else (a Tune
trial's identity, new artifact fields) is free. ``row_problem``
says what is wrong, or None; a pure function with no harness imports, so the results table can
use it without an import cycle.

**Inputs and digest.** A row records what it was computed from, ``inputs``: ``{"teachers": [the
sha256 of each teacher checkpoint, in teacher_checkpoints order, from its verified manifest],
"data": the data key (teacher_logits.data_key: what fixes the splits' rows)}``, and, as its
last key, ``digest``: the sha256 of the row's canonical JSON without ``digest`` (``row_digest``:
sorted keys, compact separators ``(",", ":")``, the form of ``scores_file.scores_digest``).
Readers check the digest when present (``harness/results.py``); rows written before digests have
neither key and are checked as before.

**Where and what.** Before ``digest``, a row records where it was computed, ``environment`` (a JSON
object: ``harness/fingerprint.py``'s fingerprint of the device, threads and precision it trained
with), and what it ended with, ``weights_sha256`` (``fingerprint.state_sha256`` of the student's
final weights: 64 hex digits, or null when not known). Rows written before them lack both.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

SCHEMA = "schema"  # a key is missing or has the wrong type
RANGE = "range"  # a value is out of its range (an accuracy outside [0, 1], epochs < 1, not finite)
ACCURACIES = ("final_val_acc", "final_test_acc", "best_val_acc", "test_acc_at_best_val")
CURVES = ("val_acc_per_epoch", "test_acc_per_epoch")
TEACHER_RUN_KEYS = ("teacher_choice", "teacher_arch", "teacher_seed", "teacher_checkpoints")
INPUTS_KEY, DIGEST_KEY = "inputs", "digest"  # (not ``teacher_*``: readers take those as teacher metrics)
ENVIRONMENT_KEY, WEIGHTS_KEY = "environment", "weights_sha256"  # (idem)
_SHA256 = re.compile(r"[0-9a-f]{64}")

Problem = tuple[str, str]  # (SCHEMA or RANGE, what is wrong, naming the key)
Check = Callable[[str, Any], "Problem | None"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _text(key: str, v: Any) -> Problem | None:
    return None if isinstance(v, str) else (SCHEMA, f"{key} is {_kind(v)}, not text")


def _text_or_null(key: str, v: Any) -> Problem | None:
    return None if v is None else _text(key, v)


def _integer(key: str, v: Any, low: int | None = None) -> Problem | None:
    if not _is_int(v):
        return SCHEMA, f"{key} is {_kind(v)}, not an integer"
    return None if low is None or v >= low else (RANGE, f"{key} is {v}, below {low}")


def _int_or_null(key: str, v: Any) -> Problem | None:
    return None if v is None else _integer(key, v)


def _number(key: str, v: Any, low: float = -math.inf, high: float = math.inf) -> Problem | None:
    if type(v) is float and low <= v <= high and v - v == 0.0:  # the usual case, fast (NaN, inf fail)
        return None
    if not _is_number(v):
        return SCHEMA, f"{key} is {_kind(v)}, not a number"
    if not math.isfinite(v):
        return RANGE, f"{key} is {v}, not a finite number"
    return None if low <= v <= high else (RANGE, f"{key} is {v}, outside [{low:g}, {high:g}]")


def _accuracy(key: str, v: Any) -> Problem | None:
    return _number(key, v, 0.0, 1.0)


def _curve(key: str, v: Any) -> Problem | None:
    if not isinstance(v, list):
        return SCHEMA, f"{key} is {_kind(v)}, not a list"
    if all(type(x) is float and 0.0 <= x <= 1.0 for x in v):  # the usual case, fast
        return None
    return next((p for i, x in enumerate(v) if (p := _accuracy(f"{key}[{i}]", x))), None)


def _sparse_curve(key: str, v: Any) -> Problem | None:
    """A curve with null where the epoch was not evaluated (test: only the final and best-val
    epochs since issue 22; older rows have a number every epoch)."""
    if isinstance(v, list) and None in v:
        return _curve(key, [x for x in v if x is not None])
    return _curve(key, v)


def _checkpoints(key: str, v: Any) -> Problem | None:
    if not isinstance(v, list):
        return SCHEMA, f"{key} is {_kind(v)}, not a list"
    for i, c in enumerate(v):
        if not isinstance(c, dict):
            return SCHEMA, f"{key}[{i}] is {_kind(c)}, not an object"
        if p := _text(f"{key}[{i}].trajectory", c.get("trajectory")) or _integer(
            f"{key}[{i}].epoch", c.get("epoch"), 0
        ):
            return p
    return None


def _inputs(key: str, v: Any) -> Problem | None:
    if not isinstance(v, dict):
        return SCHEMA, f"{key} is {_kind(v)}, not an object"
    teachers = v.get("teachers")
    if not isinstance(teachers, list):
        return SCHEMA, f"{key}.teachers is {_kind(teachers)}, not a list"
    return next((p for i, t in enumerate(teachers) if (p := _text(f"{key}.teachers[{i}]", t))), None) or _text(
        f"{key}.data", v.get("data")
    )


def _environment(key: str, v: Any) -> Problem | None:
    return None if isinstance(v, dict) else (SCHEMA, f"{key} is {_kind(v)}, not an object")


def _sha256_or_null(key: str, v: Any) -> Problem | None:
    if v is None or (isinstance(v, str) and _SHA256.fullmatch(v)):
        return None
    return SCHEMA, f"{key} is {_kind(v)}, not a sha256 (64 lowercase hex digits) or null"


REQUIRED: dict[str, Check] = {
    "run_id": _text,
    "experiment": _text,
    "dataset": _text,
    "teacher_choice": _text,
    "teacher_arch": _text_or_null,
    "teacher_seed": _int_or_null,
    "teacher_checkpoints": _checkpoints,
    "student_arch": _text,
    "seed": _integer,
    "temperature": lambda k, v: _number(k, v, 0.0) or (None if v > 0 else (RANGE, f"{k} is {v}, not above 0")),
    "kd_weight": lambda k, v: _number(k, v, 0.0, 1.0),
    "ensemble_reduce": _text,
    "epochs": lambda k, v: _integer(k, v, 1),
    **dict.fromkeys(ACCURACIES, _accuracy),
    "best_val_epoch": lambda k, v: _integer(k, v, 1),
}
OPTIONAL: dict[str, Check] = {
    "val_acc_per_epoch": _curve,
    "test_acc_per_epoch": _sparse_curve,
    "wall_time_s": lambda k, v: _number(k, v, 0.0),
    "pack_size": lambda k, v: _integer(k, v, 1),
    "device": _text,
    INPUTS_KEY: _inputs,
    ENVIRONMENT_KEY: _environment,
    WEIGHTS_KEY: _sha256_or_null,
    DIGEST_KEY: _text,
}


def row_digest(row: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, separators ``(",", ":")``) of ``row`` without
    its ``digest``: the same for the row in memory and as JSON reads it back."""
    body = {k: v for k, v in row.items() if k != DIGEST_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def row_problem(row: Mapping[str, Any]) -> Problem | None:
    """What makes ``row`` no result row of this harness (``(SCHEMA | RANGE, words naming the
    key)``), or None when it is one: required keys and types, ranges, finite teacher metrics."""
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        return SCHEMA, f"no {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
    for key, check in (*REQUIRED.items(), *((k, c) for k, c in OPTIONAL.items() if k in row)):
        if problem := check(key, row[key]):
            return problem
    if row["best_val_epoch"] > row["epochs"]:
        return RANGE, f"best_val_epoch is {row['best_val_epoch']}, after the last epoch {row['epochs']}"
    if INPUTS_KEY in row and len(row[INPUTS_KEY]["teachers"]) != len(row["teacher_checkpoints"]):
        return SCHEMA, f"{INPUTS_KEY}.teachers has not one sha256 per entry of teacher_checkpoints"
    for key, value in row.items():  # the teacher's metrics: accuracies in [0, 1], the rest finite
        if key.startswith("teacher_") and key not in TEACHER_RUN_KEYS and _is_number(value):
            if problem := (_accuracy if key.endswith("_acc") else _number)(key, value):
                return problem
    return None


def _kind(v: Any) -> str:
    return "null" if v is None else f"a {type(v).__name__} ({str(v)[:20]!r})"
