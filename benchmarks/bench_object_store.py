"""Requests and seconds per finished student: the pipeline on an S3 API server against local disk
(issue 25, point 6).

    flock /tmp/bench.lock python benchmarks/bench_object_store.py [--scale tiny|quickstart] [--repeats 2]

Each repeat runs the same config twice, side by side in this process, with ``cluster.mode=local``
(every stage in this process, so every HTTP request is counted: ``harness.objects.REQUESTS``,
botocore's ``before-send`` events): once on a fresh local folder, once on a fresh bucket of moto's
S3 server (a separate process on localhost, over HTTP; moto keeps objects in memory, so the
seconds are the client's and a local server's, with no network latency: on AWS multiply the
requests by your round trip). Per stage (teachers, score, students, report) and per finished
student: seconds and requests by operation. The node caches (data, checkpoints) start empty in
both. Results: ``benchmarks/results/bench_object_store.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
SCALES = {
    "tiny": ["data.num_samples=4000", "teacher.seeds=[0,1]", "teacher.epochs=4", "teacher.checkpoint_every=2"]
    + ["student.epochs=2", "sweep.teacher_choices=[none,full,fraction:0.5]"],
    "quickstart": [],  # configs/quickstart.yaml as it is: 3 trajectories x 40 epochs, 18 students x 30 epochs
}
STAGES = ("teachers", "score", "sweep", "leaderboard")


def run_once(storage: str, scale: str, node_cache: Path) -> dict:
    """Every stage of the config on ``storage``: seconds and requests per stage, rows finished."""
    from harness import pipeline
    from harness.config_loading import load_config
    from harness.experiment import open_store
    from harness.objects import REQUESTS

    os.environ["CKD_NODE_CACHE"] = str(node_cache)
    overrides = [f"storage={storage}", "cluster.mode=local", "tracking.mode=disabled", *SCALES[scale]]
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", overrides)
    out: dict = {"storage": storage.split("://")[0] if "://" in storage else "local", "stages": {}}
    for stage in STAGES:
        REQUESTS.clear()
        began = time.perf_counter()
        fn = getattr(pipeline, stage)
        fn(cfg, plots=False) if stage == "leaderboard" else fn(cfg)
        out["stages"][stage] = {"seconds": time.perf_counter() - began, "requests": dict(REQUESTS)}
    out["students"] = len(open_store(cfg).read_results())
    sweep = out["stages"]["sweep"]
    n = max(out["students"], 1)
    out["per_student"] = {
        "seconds": sweep["seconds"] / n,
        "requests": sum(sweep["requests"].values()) / n,
        "requests_by_op": {k: v / n for k, v in sorted(sweep["requests"].items())},
    }
    out["total"] = {
        "seconds": sum(s["seconds"] for s in out["stages"].values()),
        "requests": sum(sum(s["requests"].values()) for s in out["stages"].values()),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="quickstart")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_object_store.json")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    from benchmarks.machine import machine_info
    from tests.s3_server import spawn_s3_server

    server = spawn_s3_server()

    runs = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-objects-") as tmp:
            for r in range(args.repeats):
                for side in ("local", "s3"):
                    if side == "s3":
                        storage = f"s3://{server.new_bucket()}/runs"
                    else:
                        storage = f"{tmp}/local{r}/runs"
                    result = run_once(storage, args.scale, Path(tmp) / f"node-{side}{r}")
                    runs.append(result)
                    per = result["per_student"]
                    print(
                        f"[{side:5s} #{r}] {result['students']} students: {per['seconds']:.3f} s and "
                        f"{per['requests']:.1f} requests per student; whole run {result['total']['seconds']:.1f} s, "
                        f"{result['total']['requests']} requests",
                        flush=True,
                    )
    finally:
        server.stop()
    summary = {}
    for side in ("local", "s3"):
        mine = [r for r in runs if r["storage"] == side]
        summary[side] = {
            "seconds_per_student": sorted(r["per_student"]["seconds"] for r in mine),
            "requests_per_student": sorted(r["per_student"]["requests"] for r in mine),
            "total_seconds": sorted(r["total"]["seconds"] for r in mine),
            "stage_seconds": {s: sorted(r["stages"][s]["seconds"] for r in mine) for s in STAGES},
        }
    report = {"scale": args.scale, "repeats": args.repeats, "runs": runs, "summary": summary}
    report["machine_info"] = machine_info()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
