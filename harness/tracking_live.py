"""Live W&B student runs: one run per student, open while it trains, one step per epoch.

``LiveRun`` is the run (never raises: a W&B error is logged and the run goes quiet);
``PackRuns`` feeds the per-member metrics of a pack's epochs (``distill_pack``'s ``runs``, or a
Tune report's) into one ``LiveRun`` per member, named ``<choice>/<student>/s<seed>`` with the
whole resolved config, the grid point, the run id and the resolved teacher checkpoints. The Ray
sweep feeds it from a Tune callback on the driver (``harness/cluster/sweep_tracking.py``), the
sweep in this process from ``distill_pack``'s ``on_epoch`` hook.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from harness.config import ExperimentConfig, to_dict
from harness.failures import run_label
from harness.objects import ObjectPath
from harness.runs import teachers_text
from harness.tracking import (
    enabled,
    import_wandb,
    init_kwargs,
    is_scalar,
    run_dir_of,
    student_curve,
    trial_tags,
    upload_run,
)

logger = logging.getLogger(__name__)


class LiveRun:
    """One W&B student run kept open while the student trains: ``log`` each epoch as it arrives
    (a live view when online), ``finish`` at the end. Never raises: a W&B error is logged once
    and the run goes quiet. Several may be open at once (``reinit="create_new"``)."""

    def __init__(self, cfg: ExperimentConfig, name: str, config: dict, tags: Sequence[str] = ()) -> None:
        self.cfg, self.name, self.run = cfg, name, None
        if not enabled(cfg):
            return
        init = {"name": name, "config": config, "job_type": "student", "tags": trial_tags(config, base=tags)}
        try:
            self.run = import_wandb().init(**init_kwargs(cfg, reinit="create_new", **init))
        except Exception as e:  # tracking must never stop the pipeline
            self._quiet(e)

    def _quiet(self, e: BaseException) -> None:
        logger.info("[tracking] W&B run %s failed (%s: %s); continuing without it", self.name, type(e).__name__, e)
        self.run = None

    def log(self, metrics: dict, step: int) -> None:
        if self.run is not None:
            try:
                self.run.log({k: v for k, v in metrics.items() if is_scalar(v)}, step=int(step))
            except Exception as e:
                self._quiet(e)

    def finish(self, failed: bool = False) -> Path | ObjectPath | None:
        """Close the run (``failed``: tagged and exit code 1) and upload it to an object store
        (``tracking.upload_run``); its folder."""
        run, self.run = self.run, None
        if run is None:
            return None
        try:
            if failed:
                run.tags = (*run.tags, "failed")
            run.summary["failed"] = failed
            run.finish(exit_code=1 if failed else 0)
        except Exception as e:
            self._quiet(e)
            return None
        return upload_run(self.cfg, run_dir_of(run))


def student_config(cfg_dict: dict, member: dict) -> dict:
    """A student run's W&B config: the whole resolved experiment config, the run's grid point,
    its run id and its resolved teacher checkpoints."""
    point = {k: member.get(k) for k in ("teacher_arch", "teacher_seed", "student_arch", "teacher_choice")}
    point.update({k: member.get(k) for k in ("temperature", "kd_weight", "seed")})
    return {**cfg_dict, **point, "run_id": member.get("run_id"), "teachers": member.get("teachers")}


class PackRuns:
    """One ``LiveRun`` per member of the packs it is fed, keyed by ``(pack key, member index)``."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg, self.config = cfg, to_dict(cfg)
        self.open: dict[tuple[str, str], LiveRun] = {}
        self.logged: set[str] = set()  # run ids logged already (a retried trial does not log twice)

    def member(self, pack: str, index: str, member: dict) -> LiveRun:
        key = (pack, str(index))
        if key not in self.open:
            name = member.get("label") or run_label(member)
            self.open[key] = LiveRun(self.cfg, name, student_config(self.config, member))
        return self.open[key]

    def epoch(self, pack: str, members: dict | list, grid: Sequence[dict] = ()) -> None:
        """Log one epoch of every member (``members``: by index, or a list); ``grid``: the pack's
        grid points, for the identity of members whose metrics lack it."""
        items = members.items() if isinstance(members, dict) else enumerate(members)
        for i, m in items:
            if m.get("failed") or "epoch" not in m:
                continue
            ident = {**(grid[int(i)] if int(i) < len(grid) else {}), **m}
            self.member(pack, str(i), ident).log(m, step=int(m["epoch"]))

    def row(self, pack: str, index: str, row: dict) -> None:
        """A member that was done before this process saw it: its curve from its result row."""
        run = self.member(pack, index, {**row, "teachers": teachers_text(row.get("teacher_checkpoints"))})
        for metrics in student_curve(row):
            run.log(metrics, step=metrics["epoch"])

    def close(self, pack: str, failed: Sequence[str] = (), grid: Sequence[dict] = ()) -> None:
        """Finish every open run of ``pack``; members listed in ``failed`` are tagged failed
        (opened first when they never logged an epoch)."""
        for i in failed:
            if (pack, str(i)) not in self.open and int(i) < len(grid):
                self.member(pack, str(i), dict(grid[int(i)]))
        for key in [k for k in self.open if k[0] == pack]:
            self.open.pop(key).finish(failed=key[1] in {str(i) for i in failed})
