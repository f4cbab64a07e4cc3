"""What Ray costs: wall time of ``ckd run`` on Ray vs the same work in-process, and epoch times.

Ray overhead (default)::

    python benchmarks/bench_ray_overhead.py [--config configs/quickstart.yaml] [key=value ...]

runs ``ckd run CONFIG`` twice from fresh storage, once on a local Ray cluster (trajectory actors
+ scorer actor + Tune sweep) and once with ``--local`` (the same core functions one after
another in one process: ``run_teachers``, ``run_scoring``, ``distill_student`` per grid point),
each as a subprocess so that imports and cluster start-up count; then runs each again to time
the idempotent re-run. W&B is off in both (``tracking.mode=disabled``) unless ``--keep-tracking``,
so the numbers are about Ray. Prints a table and writes ``<root>/bench_ray_overhead.json``.

Epoch times per device (no Ray needed; for the GPU machines)::

    python benchmarks/bench_ray_overhead.py --epoch-times cpu,cuda [key=value ...]

trains one short teacher trajectory and distills one student from it through the core functions
on each device and reports the median seconds per epoch (first epoch excluded as warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402

STAGES = re.compile(r"\[run\] stage times: (.*)")


def run_ckd(config: str, overrides: list[str], storage: Path, local: bool, log: Path) -> dict:
    cmd = [sys.executable, "-m", "harness.cli", "run", config, *overrides, f"storage={storage}"]
    if local:
        cmd.append("--local")
    began = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - began
    text = log.read_text()
    stages = STAGES.findall(text)
    return {"rc": rc, "wall_s": round(wall, 1), "stages": stages[-1] if stages else None}


def overhead(args: argparse.Namespace, overrides: list[str]) -> dict:
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not args.keep_tracking:
        overrides = [*overrides, "tracking.mode=disabled"]
    machine = machine_info()
    results: dict[str, dict] = {}
    for mode in args.modes.split(","):
        storage = root / f"storage-{mode}-{int(time.time())}"
        log = root / f"{mode}.log"
        log.write_text("")
        first = run_ckd(args.config, overrides, storage, mode == "local", log)
        again = run_ckd(args.config, overrides, storage, mode == "local", log) if first["rc"] == 0 else None
        results[mode] = {"first": first, "rerun": again, "log": str(log), "storage": str(storage)}
        print(
            f"{mode:>6}: first run {first['wall_s']:7.1f}s (rc {first['rc']})   re-run "
            f"{again['wall_s'] if again else float('nan'):6.1f}s   stages: {first['stages']}",
            flush=True,
        )
    if "ray" in results and "local" in results:
        ray_s, local_s = results["ray"]["first"]["wall_s"], results["local"]["first"]["wall_s"]
        ratio = round(ray_s / local_s, 3) if local_s else None
        results["ray_over_local"] = {"seconds": round(ray_s - local_s, 1), "ratio": ratio}
        print(f"Ray vs in-process: {ray_s - local_s:+.1f}s ({ray_s / local_s:.2f}x)", flush=True)
    out = root / "bench_ray_overhead.json"
    report = {"config": args.config, "overrides": overrides, "cpus": os.cpu_count(), "machine_info": machine}
    out.write_text(json.dumps({**report, "results": results}, indent=2))
    print(f"written {out}")
    return results


def epoch_times(args: argparse.Namespace, overrides: list[str]) -> dict:
    import torch

    from harness.config_loading import load_config
    from harness.distill import distill_student
    from harness.teachers import train_trajectory

    root = Path(args.root).resolve()
    out: dict[str, dict] = {
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "machine_info": machine_info(),
    }
    for device in args.epoch_times.split(","):
        # one storage (so one data cache under <root>/epochs/cache), a fresh experiment per device
        cfg = load_config(
            args.config,
            [
                *overrides,
                f"storage={root / 'epochs'}",
                f"name=epochs-{device.replace(':', '')}-{int(time.time())}",
                f"device={device}",
                f"teacher.epochs={args.teacher_epochs}",
                f"teacher.checkpoint_every={args.teacher_epochs}",
                f"student.epochs={args.student_epochs}",
                "teacher.seeds=[0]",
                "tracking.mode=disabled",
                "distill.teacher_choice=full",
            ],
        )
        began = time.perf_counter()
        manifest = train_trajectory(cfg, cfg.teacher.archs[0], 0)
        teacher_wall = time.perf_counter() - began
        t_secs = [h["seconds"] for h in manifest["history"]]
        s_secs: list[float] = []
        began = time.perf_counter()
        row = distill_student(cfg, on_epoch=lambda m, s, secs=s_secs: secs.append(m["seconds"]))
        student_wall = time.perf_counter() - began
        out[device] = {
            "teacher_s_per_epoch": round(statistics.median(t_secs[1:] or t_secs), 4),
            "teacher_wall_s": round(teacher_wall, 2),
            "teacher_test_acc": manifest["checkpoints"][-1]["test_acc"],
            "student_s_per_epoch": round(statistics.median(s_secs[1:] or s_secs), 4),
            "student_wall_s": round(student_wall, 2),
            "student_test_acc": row["final_test_acc"],
            "device_used": manifest.get("device"),
            "threads": torch.get_num_threads(),
        }
        print(
            f"{device:>5}: teacher {out[device]['teacher_s_per_epoch']:.4f} s/epoch ({args.teacher_epochs} epochs, "
            f"{teacher_wall:.1f}s), student {out[device]['student_s_per_epoch']:.4f} s/epoch "
            f"({args.student_epochs} epochs, {student_wall:.1f}s) on {manifest.get('device')}",
            flush=True,
        )
    path = root / "bench_epoch_times.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"written {path}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    p.add_argument(
        "--root", default="/tmp/ckd-bench-ray-overhead", help="benchmark folder (fresh storage per mode inside)"
    )
    p.add_argument("--modes", default="local,ray", help="comma list of: ray, local")
    p.add_argument("--keep-tracking", action="store_true", help="keep the config's tracking.mode (default: disabled)")
    p.add_argument(
        "--epoch-times", default=None, help="comma list of devices (cpu,cuda): epoch times instead of overhead"
    )
    p.add_argument("--teacher-epochs", type=int, default=6)
    p.add_argument("--student-epochs", type=int, default=6)
    p.add_argument("overrides", nargs="*", help="dotlist overrides for the config")
    args = p.parse_args()
    if args.epoch_times:
        epoch_times(args, args.overrides)
    else:
        overhead(args, args.overrides)


if __name__ == "__main__":
    main()
