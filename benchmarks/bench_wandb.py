"""What W&B tracking adds to a sweep: the same 8-trial ``ckd sweep`` with tracking disabled and
offline, one after the other, each on its own copy of a store with finished teachers.

    python benchmarks/bench_wandb.py --teachers runs/quickstart [--out FILE]

``--teachers``: a finished quickstart experiment folder (e.g. from README command 1); only its
trajectories are copied. Reports each sweep's wall time (a subprocess: imports and cluster
start-up count) and the offline/disabled ratio, and whether the log holds a traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402

GRID = ["sweep.teacher_choices=[none,full]", "sweep.seeds=[0,1,2,3]"]


def sweep(storage: Path, mode: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "harness.cli",
        "sweep",
        str(ROOT / "configs" / "quickstart.yaml"),
        f"storage={storage}",
        f"tracking.mode={mode}",
        *GRID,
    ]
    env = {k: v for k, v in __import__("os").environ.items() if k != "WANDB_MODE"}
    began = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - began
    text = out.stdout + out.stderr
    return {
        "rc": out.returncode,
        "wall_s": round(wall, 1),
        "traceback_in_log": "Traceback" in text,
        "wandb_runs": len(list((storage / "quickstart" / "wandb").glob("offline-run-*"))),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", required=True, help="a finished quickstart experiment folder")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_wandb_cpu2.json"))
    args = p.parse_args()
    result: dict = {"machine_info": machine_info()}
    with tempfile.TemporaryDirectory() as d:
        for mode in ("disabled", "offline"):
            storage = Path(d) / mode
            shutil.copytree(Path(args.teachers) / "trajectories", storage / "quickstart" / "trajectories")
            result[mode] = sweep(storage, mode)
            print(mode, result[mode], flush=True)
    result["ratio_offline_vs_disabled"] = round(result["offline"]["wall_s"] / result["disabled"]["wall_s"], 2)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
