"""Per-trial orchestration overhead of the harness's Tune sweep vs bare Ray Tune, side by side.

    python benchmarks/bench_tune_overhead.py [--trials 2000] [--cpus 2] [--out FILE]

Both run no-op trials that report once and checkpoint once, on one local Ray cluster, one after
the other: **bare** is ``tune.Tuner`` with defaults and a grid over the same run dicts, and
checkpoints the Tune way (``tune.Checkpoint``); **harness** is
``harness.cluster.sweep.build_tuner`` (its callbacks, names and failure settings,
``with_parameters(cfg)``) with a no-op trainable that checkpoints the harness way (its own state
file in the trial folder, as ``TrialReporter`` does). ``--only`` times one side in a fresh
process, so that its driver memory is not measured on a heap the other side already grew.
Reported: wall seconds per trial, driver peak RSS per trial (KB) and the GCS server's RSS.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def noop(config: dict, cfg=None) -> None:
    from ray import tune

    with tempfile.TemporaryDirectory() as d:
        Path(d, "state.txt").write_text("x")
        tune.report({"val_acc": 0.5, "epoch": 1}, checkpoint=tune.Checkpoint.from_directory(d))


def noop_harness(config: dict, cfg=None) -> None:
    """The harness's way to "checkpoint once": its trials save their state to a file of their own
    (``TrialReporter``), not as a Tune checkpoint; then they report."""
    from ray import tune

    from harness.cluster.trainable import trial_storage_dir
    from harness.fileio import atomic_write_bytes

    atomic_write_bytes(trial_storage_dir(tune.get_context(), cfg) / "student_state.pt", b"x")
    tune.report({"val_acc": 0.5, "epoch": 1})


def runs_for(n: int) -> list[dict]:
    return [
        {
            "teacher_arch": "cnn1d_small",
            "teacher_seed": 0,
            "student_arch": "mlp_small",
            "teacher_choice": "full",
            "temperature": 4.0,
            "kd_weight": 0.5,
            "seed": i,
        }
        for i in range(n)
    ]


def rss_kb() -> int:
    """The driver's current resident memory (KB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def gcs_rss_kb() -> int | None:
    out = subprocess.run(["ps", "-C", "gcs_server", "-o", "rss="], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def bare(n: int, storage: Path) -> float:
    from ray import tune

    tuner = tune.Tuner(
        noop,
        param_space={"run": tune.grid_search(runs_for(n))},
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", reuse_actors=True),
        run_config=tune.RunConfig(name="bare", storage_path=str(storage), verbose=0),
    )
    began = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - began


def harness(n: int, storage: Path) -> float:
    from harness.cluster import sweep
    from harness.cluster.connection import ClusterSession
    from harness.config_loading import load_config

    cfg = load_config(
        ROOT / "configs" / "quickstart.yaml",
        [f"storage={storage}", "tracking.mode=disabled", "cluster.progress_interval_s=30", "sweep.pack_size=1"],
    )  # a trial per run
    session = ClusterSession(cfg)
    try:
        from harness.runs import Run

        runs = [Run(**r) for r in runs_for(n)]
    except ImportError:  # an older checkout: runs were dicts
        runs = runs_for(n)
    size = int(getattr(cfg.sweep, "trials_per_experiment", 0) or n)
    began = time.perf_counter()
    for k in range(0, n, size):  # as run_sweep slices a grid into Tune experiments
        part = runs[k : k + size]
        try:
            tuner, _ = sweep.build_tuner(
                session, part, function=noop_harness, part=f"-part{k // size:03d}" if size < n else ""
            )
        except TypeError:  # an older checkout (--only harness with PYTHONPATH=<old>): swap its trainable
            sweep.distill_trial = noop
            tuner, _ = sweep.build_tuner(session, part)
        tuner.fit()
    return time.perf_counter() - began


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_tune_overhead_cpu2.json"))
    p.add_argument("--only", choices=["bare", "harness"], help="time one side alone (its memory then starts fresh)")
    args = p.parse_args()
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
    result: dict = {"trials": args.trials, "cpus": args.cpus}
    sides = [(name, fn) for name, fn in (("bare", bare), ("harness", harness)) if args.only in (None, name)]
    with tempfile.TemporaryDirectory() as d:
        for name, fn in sides:  # imports and worker start-up are not per-trial costs
            fn(20, Path(d) / f"warm-up-{name}")
        for name, fn in sides:
            before = rss_kb()
            secs = fn(args.trials, Path(d) / name)
            result[name] = {
                "wall_s": round(secs, 1),
                "ms_per_trial": round(1000 * secs / args.trials, 1),
                "driver_rss_growth_kb_per_trial": round((rss_kb() - before) / args.trials, 2),
                "gcs_rss_kb": gcs_rss_kb(),
            }
            print(name, result[name], flush=True)
    if len(sides) == 2:
        result["ratio_harness_vs_bare"] = round(result["harness"]["wall_s"] / result["bare"]["wall_s"], 2)
    ray.shutdown()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
