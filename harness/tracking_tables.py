"""The W&B tables of the harness: each scores file and the report (leaderboard with paired
statistics, claims, selector evaluation, plots) as a run of ``wandb.Table``s.

``log_scores(cfg, scores, trajectory)``: the score table of one trajectory (one row per
checkpoint); ``log_leaderboard(cfg, board, ...)``: the report in a run of its own (job_type
``leaderboard``), accuracies and paired differences in percent. Both are idempotent and never stop
the pipeline (``harness.tracking.logged_run``); ``wandb`` is imported only when a run is written.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import ExperimentConfig
from harness.objects import ObjectPath, location
from harness.report.paired import PAIRED_COLUMNS, PAIRED_HEADERS
from harness.tracking import MAX_TAG_LEN, enabled, is_scalar, logged_run


def score_rows(scores: Any) -> list[dict]:
    """Flat per-checkpoint rows from a scores file, whatever its nesting: a list of dicts, or the
    first list of dicts found under ``checkpoints``/``rows``/``scores``/any key (nested dicts
    become dotted columns; lists become JSON strings)."""
    from harness.results import flatten_row  # here: results.py imports torch (fileio), tracking must not

    def find(obj: Any) -> list[dict] | None:
        if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
            return obj
        if isinstance(obj, dict):
            for k in ("checkpoints", "rows", "scores", *obj.keys()):
                if k in obj:
                    found = find(obj[k])
                    if found is not None:
                        return found
        return None

    rows = find(scores) or []
    return [flatten_row(r) for r in rows]


def wandb_table(wandb, rows: list[dict]):
    """A ``wandb.Table`` of dict rows (union of keys as columns). W&B types each column, so a
    column that mixes numbers with text is stored as text."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    as_text = set()
    for c in columns:
        kinds = {isinstance(r[c], (int, float)) and not isinstance(r[c], bool) for r in rows if r.get(c) is not None}
        if len(kinds) > 1:
            as_text.add(c)

    def cell(c: str, v: Any) -> Any:
        if v is None:
            return None
        if c in as_text or not is_scalar(v):
            return v if isinstance(v, str) else json.dumps(v, default=str)
        return v

    data = [[cell(c, r.get(c)) for c in columns] for r in rows]
    return wandb.Table(columns=columns, data=data, allow_mixed_types=True)


def log_scores(cfg: ExperimentConfig, scores: dict, trajectory: str, force: bool = False) -> Path | None:
    """The score table of one trajectory (one row per checkpoint) as a W&B run with a
    ``wandb.Table``; top-level scalars of ``scores`` (and small dicts such as selections) go
    into the run config."""
    if not enabled(cfg):
        return None
    rows = score_rows(scores)
    config = (
        {
            k: v
            for k, v in scores.items()
            if is_scalar(v) or (isinstance(v, dict) and len(json.dumps(v, default=str)) < 4000)
        }
        if isinstance(scores, dict)
        else {}
    )

    def body(wandb, run) -> None:
        if rows:
            run.log({"scores": wandb_table(wandb, rows)})
        run.summary["num_checkpoints"] = len(rows)
        from harness.scoring.scores_file import picks  # here: the scorer's modules import torch

        run.summary.update({f"selected/{k}": p.epoch for k, p in picks(scores).items() if p.epoch is not None})

    init = {
        "job_type": "scores",
        "name": f"scores-{trajectory}",
        "tags": ["scores", trajectory[:MAX_TAG_LEN]],
        "config": {"trajectory": trajectory, **config},
    }
    return logged_run(cfg, f"scores-{trajectory}", scores, body, init, force)


LEADERBOARD_TABLE_KEYS = (
    "dataset",
    "teacher_arch",
    "student_arch",
    "teacher_choice",
    "test_mean",
    "test_std",
    "n",
    "delta_vs_none",
    "teacher_test_acc",
    "temperature",
    "kd_weight",
    "ensemble_reduce",
    "val_mean",
    "val_std",
    "teacher_epochs",
    "reported_epoch",
    "unstable",
)


def leaderboard_table_rows(board: list[dict]) -> list[dict]:
    """The leaderboard as flat rows for a W&B Table: accuracies and paired differences in
    percent (points); the reference row has no paired values."""
    pct = {"test_mean", "test_std", "delta_vs_none", "teacher_test_acc", "val_mean", "val_std"}
    out = []
    for b in board:
        row = {
            k: (None if b.get(k) is None else 100 * b[k])
            if k in pct
            else (b.get(k) if is_scalar(b.get(k)) else str(b.get(k)))
            for k in LEADERBOARD_TABLE_KEYS
        }
        c = b.get("vs_ref") or {}
        for k in PAIRED_COLUMNS:
            v = c.get(k)
            row[PAIRED_HEADERS.get(k, k)] = (
                b.get("reference")
                if k == "ref"
                else (None if c.get("self") or v is None else (100 * v if k.startswith("diff") else v))
            )
        out.append(row)
    return out


def claims_table_rows(claims: list[dict]) -> list[dict]:
    pct = ("choice_acc", "ref_acc", "choice_teacher_acc", "ref_teacher_acc", "diff_mean", "diff_ci_low", "diff_ci_high")
    return [
        {k: (None if v is None else 100 * v) if k in pct else v for k, v in c.items() if is_scalar(v)} for c in claims
    ]


def selector_table_rows(selectors: dict) -> list[dict]:
    out = []
    for (dataset, teacher, student), g in (selectors or {}).get("groups", {}).items():
        for r in g["rows"]:
            out.append(
                {
                    "dataset": dataset,
                    "teacher_arch": teacher,
                    "student_arch": student,
                    "noise_ceiling": g["noise_ceiling"][0],
                    **{k: v for k, v in r.items() if is_scalar(v)},
                    "hit1": r["hit1"][0],
                    "hit3": r["hit3"][0],
                }
            )
    return out


def log_leaderboard(
    cfg: ExperimentConfig,
    board: list[dict],
    force: bool = False,
    claims: list[dict] | None = None,
    selectors: dict | None = None,
    plots: Sequence[Path] = (),
) -> Path | None:
    """The report in a run of its own (job_type ``leaderboard``): the leaderboard, the claims and
    the selector evaluation as ``wandb.Table``s (percent), the plots as ``wandb.Image``s."""
    if not enabled(cfg) or not board:
        return None
    tables = {
        "leaderboard": leaderboard_table_rows(board),
        "claims": claims_table_rows(claims or []),
        "selectors": selector_table_rows(selectors or {}),
    }
    images = _images(plots)

    def body(wandb, run) -> None:
        from harness.report.leaderboard import policy_note

        run.log({k: wandb_table(wandb, v) for k, v in tables.items() if v})
        if images:
            run.log({f"plots/{p.stem}": _wandb_image(wandb, p, data) for p, data in images})
        run.summary["selection_policy"] = policy_note(board)

    init = {
        "job_type": "leaderboard",
        "name": f"leaderboard-{cfg.name}",
        "tags": ["leaderboard"],
        "notes": "student test accuracy and paired differences in percent",
    }
    fingerprint = {**tables, "plots": [hashlib.sha256(data).hexdigest() for _, data in images]}
    return logged_run(cfg, "leaderboard", fingerprint, body, init, force)


def _images(plots: Sequence[Path | ObjectPath]) -> list[tuple[Path | ObjectPath, bytes]]:
    """The plots that exist (files or objects) and their bytes, read once."""
    out = []
    for p in map(location, plots):
        try:
            out.append((p, p.read_bytes()))
        except (FileNotFoundError, IsADirectoryError):
            continue
    return out


def _wandb_image(wandb, path: Path | ObjectPath, data: bytes):
    """A ``wandb.Image`` of a plot: from its file, or (an object) decoded from its bytes."""
    if not isinstance(path, ObjectPath):
        return wandb.Image(str(path), caption=path.name)
    from PIL import Image

    return wandb.Image(Image.open(io.BytesIO(data)), caption=path.name)
