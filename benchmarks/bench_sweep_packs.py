"""72 students on the quickstart teachers: ``ckd sweep`` on Ray vs the same packs in plain processes.

    python benchmarks/bench_sweep_packs.py --teachers runs/quickstart [--seeds 9] [--cpus 2] [--code DIR] [--out FILE]

``--teachers``: an experiment folder whose trajectories ``ckd teachers configs/quickstart.yaml``
trained (copied). Two sides, one after the other, each on a fresh results
folder with a copy of the same trajectories:

- **ckd**: ``ckd sweep configs/quickstart.yaml 'sweep.teacher_choices=[every_checkpoint]'
  'sweep.seeds=range(0,N)'`` on a local Ray cluster of ``--cpus`` CPUs (``sweep.pack_size=auto``:
  the packs Tune trials get). Timed: its Tune experiment (the ``[sweep] Tune experiment`` line)
  and the whole command.
- **plain**: the very same packs (``harness.sweep.make_packs`` with the sweep's slots), each
  ``distill_pack`` in its own process, ``--cpus`` processes at a time, no Ray: what the packs cost
  without Ray and Tune. Timed: from the first process's start to the last one's end.

The ratio ``ckd / plain`` is what Ray, Tune and the trial path add to the same work.
``--code DIR``: time another checkout's harness (e.g. the previous commit in a git worktree).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # benchmarks.machine; harness comes from --code (first on the path)

from benchmarks.bench_trial_cost import ckd, fit_seconds  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402


def overrides(storage: Path, seeds: int) -> list[str]:
    return [
        f"storage={storage}",
        "sweep.teacher_choices=[every_checkpoint]",
        f"sweep.seeds=range(0,{seeds})",
        "tracking.mode=disabled",
    ]


def copy_teachers(teachers: Path, storage: Path) -> None:
    """``storage``/quickstart with a copy of the trained trajectories and the data cache (copies:
    the store refuses links that lead out of ``storage``)."""
    exp = storage / "quickstart"
    exp.mkdir(parents=True)
    shutil.copytree(teachers / "trajectories", exp / "trajectories")
    if (teachers.parent / "cache").is_dir():
        shutil.copytree(teachers.parent / "cache", storage / "cache")


def ckd_side(storage: Path, seeds: int, cpus: int, code: Path, log: Path) -> dict:
    args = ["sweep", str(ROOT / "configs" / "quickstart.yaml"), *overrides(storage, seeds), f"cluster.num_cpus={cpus}"]
    wall = ckd(args, code, log)
    fits = fit_seconds(log)
    return {
        "trials": sum(n for n, _ in fits),
        "fit_s": round(sum(s for _, s in fits), 1),
        "command_wall_s": round(wall, 1),
    }


def _train_pack(args: tuple[list[str], list[dict]]) -> float:
    """One pack in this (fresh) process, as a trial trains it: its seconds."""
    from harness.config_loading import load_config
    from harness.distill import distill_pack
    from harness.runs import Run

    cfg_overrides, entries = args  # (harness from --code: PYTHONPATH, first on the path)
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", cfg_overrides)
    began = time.perf_counter()
    rows = distill_pack(cfg, [Run.from_dict(cfg, e) for e in entries])
    assert all(r is not None for r in rows)
    return time.perf_counter() - began


def plain_side(storage: Path, seeds: int, cpus: int) -> dict:
    from harness.config_loading import load_config
    from harness.sweep import make_packs, sweep_runs

    cfg_overrides = [*overrides(storage, seeds), "threads=1"]
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", cfg_overrides)
    packs = make_packs(cfg, sweep_runs(cfg), slots=cpus)
    began = time.perf_counter()
    with mp.get_context("spawn").Pool(cpus, maxtasksperchild=1) as pool:
        seconds = pool.map(_train_pack, [(cfg_overrides, [r.to_dict() for r in p]) for p in packs], chunksize=1)
    return {
        "packs": [len(p) for p in packs],
        "wall_s": round(time.perf_counter() - began, 1),
        "pack_s": [round(s, 1) for s in seconds],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", type=Path, required=True, help="e.g. runs/quickstart (after ckd teachers)")
    p.add_argument("--seeds", type=int, default=9)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--code", type=Path, default=ROOT, help="the checkout whose harness is timed")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_sweep_packs_cpu2.json"))
    args = p.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    code = str(args.code.resolve())
    os.environ["PYTHONPATH"] = code  # the ckd subprocess and the spawned pack processes
    sys.path.insert(0, code)
    result: dict = {"machine_info": machine_info(1), "cpus": args.cpus, "seeds": args.seeds, "code": code}
    with tempfile.TemporaryDirectory() as d:
        for side in ("plain", "ckd"):
            storage = Path(d) / side
            copy_teachers(args.teachers.resolve(), storage)
            if side == "ckd":
                result[side] = ckd_side(storage, args.seeds, args.cpus, Path(code), Path(d) / "ckd.log")
            else:
                result[side] = plain_side(storage, args.seeds, args.cpus)
            print(side, result[side], flush=True)
    result["ratio_fit_vs_plain"] = round(result["ckd"]["fit_s"] / result["plain"]["wall_s"], 2)
    result["ratio_command_vs_plain"] = round(result["ckd"]["command_wall_s"] / result["plain"]["wall_s"], 2)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
