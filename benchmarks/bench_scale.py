"""Orchestration cost at sweep scale, without training: result writes and grid planning.

    python benchmarks/bench_scale.py [--rows 0,1000,10000,100000] [--runs 1000,10000,100000]
                                     [--before /path/to/older/checkout] [--out results.json]

- **results write**: seconds to record one more finished run when 0 / 1k / 10k / 100k rows are
  present (median of a few writes). Rows are realistic in size (per-epoch accuracy lists).
- **planning**: seconds to list and resolve a grid of ~10^3 / 10^4 / 10^5 runs against a store
  of finished (fake, manifest-only) teacher trajectories, and to find the done runs.
- **CLI planning** (``--cli-runs``): the user's path, ``ckd sweep configs/quickstart.yaml
  sweep.seeds=range(0,N) --dry-run`` (teachers not trained) as a subprocess under
  ``/usr/bin/time -v``: wall seconds (imports included) and peak RSS at ~10^3 / 10^4 / 10^5 runs.
  A checkout without seed ranges gets the same seeds as a list (refused past 1,000 seeds).

``--before DIR`` also times a checkout of an older version (run with ``PYTHONPATH=DIR``) in the
same sitting, for the before/after table; its sizes are capped (``--before-rows``,
``--before-runs``) because the old costs grow with the square of the sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # benchmarks.machine; appended, so --before's PYTHONPATH keeps `harness`
EPOCHS = 30


def fake_row(i: int) -> dict:
    """A row of the schema a stored row must have (``harness/row_schema.py``; like
    tests/helpers.py ``valid_row``), sealed with its digest where the checkout has digests."""
    acc = [0.5 + 0.001 * e for e in range(EPOCHS)]
    epoch = 10 * (1 + i % 8)
    row = {
        "run_id": f"run{i:07d}",
        "experiment": "bench",
        "dataset": "mnist1d",
        "teacher_choice": f"epoch:{epoch}",
        "teacher_arch": "cnn1d_small",
        "teacher_seed": 0,
        "teacher_checkpoints": [{"trajectory": "cnn1d_small-mnist1d-s0", "epoch": epoch}],
        "student_arch": "mlp_small",
        "seed": i,
        "temperature": 4.0,
        "kd_weight": 0.5,
        "ensemble_reduce": "probs",
        "epochs": EPOCHS,
        "teacher_val_acc": 0.9,
        "teacher_test_acc": 0.9,
        "final_val_acc": acc[-1],
        "final_test_acc": acc[-1],
        "best_val_acc": acc[-1],
        "best_val_epoch": EPOCHS,
        "test_acc_at_best_val": acc[-1],
        "val_acc_per_epoch": acc,
        "test_acc_per_epoch": acc,
        "wall_time_s": 1.0,
        "pack_size": 1,
        "device": "cpu",
        "inputs": {"teachers": ["0" * 64], "data": "0" * 12},
    }
    try:
        from harness.row_schema import DIGEST_KEY, row_digest
    except ImportError:  # an older checkout (--before): rows without a digest
        return row
    return {**row, DIGEST_KEY: row_digest(row)}


def fill(store, n: int) -> None:
    """``n`` rows present, written the way the store keeps them (old: one results.jsonl)."""
    if hasattr(store, "results"):  # row files + a compacted view
        rows_dir = store.results.rows_dir
        rows_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (rows_dir / f"run{i:07d}.json").write_text(json.dumps(fake_row(i), sort_keys=True) + "\n")
        store.compact_results()
    else:
        store.root.mkdir(parents=True, exist_ok=True)
        with open(store.results_jsonl, "w") as f:
            f.writelines(json.dumps(fake_row(i), sort_keys=True) + "\n" for i in range(n))


def time_writes(sizes: list[int], repeats: int = 5) -> dict:
    from harness.store import CheckpointStore

    out = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            store = CheckpointStore(d, "bench")
            fill(store, n)
            secs = []
            for k in range(repeats):
                began = time.perf_counter()
                store.append_result(fake_row(10_000_000 + k))
                secs.append(time.perf_counter() - began)
            out[str(n)] = round(statistics.median(secs), 5)
            print(f"results write with {n:>7} rows present: {out[str(n)]:.5f} s", flush=True)
    return out


def fake_trajectories(storage: Path, seeds: int, epochs: int = 80, every: int = 10) -> None:
    for s in range(seeds):
        d = storage / "bench" / "trajectories" / f"cnn1d_small-mnist1d-s{s}"
        d.mkdir(parents=True, exist_ok=True)
        ckpts = [{"epoch": e, "file": f"ckpt-e{e:04d}.pt", "sha256": "0" * 64} for e in range(every, epochs + 1, every)]
        (d / "manifest.json").write_text(json.dumps({"finished": True, "epochs": epochs, "checkpoints": ckpts}))


def grid_overrides(storage: Path, runs: int) -> list[str]:
    """~``runs`` grid points: (every checkpoint + full + half-way + snapshot) x 5 T x 5 w x seeds + none."""
    per_seed = 11 * 25 + 1
    seeds = max(1, round(runs / per_seed))
    return [
        f"storage={storage}",
        "name=bench",
        "teacher.seeds=[0,1,2]",
        "tracking.mode=disabled",
        'sweep.teacher_choices=["none","every_checkpoint","full","fraction:0.5","snapshot:[0.5,1.0]"]',
        "sweep.temperature=[1,2,4,8,16]",
        "sweep.kd_weight=[0.1,0.3,0.5,0.7,0.9]",
        f"sweep.seeds=[{','.join(str(i) for i in range(seeds))}]",
    ]


def time_planning(sizes: list[int]) -> dict:
    from harness.config_loading import load_config

    try:
        from harness.sweep import plan, sweep_runs
    except ImportError:  # older checkouts kept the grid in the Ray module
        from harness.cluster.sweep import plan, sweep_runs

    out = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            fake_trajectories(Path(d), 3)
            cfg = load_config(ROOT / "configs" / "quickstart.yaml", grid_overrides(Path(d), n))
            began = time.perf_counter()
            runs = sweep_runs(cfg)
            planned = plan(cfg, runs)
            secs = time.perf_counter() - began
            out[str(len(planned))] = round(secs, 3)
            print(f"planning {len(planned):>7} runs: {secs:.3f} s", flush=True)
    return out


RUNS_PER_SEED = 6  # configs/quickstart.yaml: six teacher choices, one T and kd_weight


def cli_dry_run(runs: int) -> dict:
    """``ckd sweep --dry-run`` of ~``runs`` runs in a subprocess: wall s, peak RSS MiB, its grid line."""
    n = max(1, round(runs / RUNS_PER_SEED))
    try:
        from harness.config import seed_list  # noqa: F401  (seed ranges exist)

        seeds = f"range(0,{n})"
    except ImportError:
        seeds = "[" + ",".join(map(str, range(n))) + "]"
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "harness.cli", "sweep", str(ROOT / "configs" / "quickstart.yaml")]
        cmd += [f"sweep.seeds={seeds}", f"storage={d}/runs", "tracking.mode=disabled", "--dry-run"]
        began = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=os.environ.copy())
        wall = time.perf_counter() - began
    rss = next((int(x.split()[-1]) for x in p.stderr.splitlines() if "Maximum resident set size" in x), 0)
    grid = next((x.split(";")[0] for x in p.stdout.splitlines() if "runs in the grid" in x), "")
    refused = next((x for x in p.stderr.splitlines() if x.startswith("ckd")), "")[:160]
    return {"seeds": n, "rc": p.returncode, "wall_s": round(wall, 2), "peak_rss_mib": round(rss / 1024, 1)} | (
        {"grid": grid} if p.returncode == 0 else {"refused": refused}
    )


def time_cli_planning(sizes: list[int]) -> dict:
    out = {}
    for n in sizes:
        out[str(n)] = got = cli_dry_run(n)
        print(f"ckd sweep --dry-run, ~{n:>7} runs: {got}", flush=True)
    return out


def before(checkout: str, rows: str, runs: str, cli_runs: str = "") -> dict:
    """The same measurements with an older checkout's ``harness`` (a subprocess)."""
    env = {**os.environ, "PYTHONPATH": checkout}
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run(
            [sys.executable, __file__, "--rows", rows, "--runs", runs, "--out", f.name, "--quiet-before"]
            + ["--cli-runs", cli_runs],
            env=env,
            check=True,
            cwd=checkout,
        )
        return json.loads(Path(f.name).read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="0,1000,10000,100000")
    p.add_argument("--runs", default="1000,10000,100000")
    p.add_argument("--before", help="an older checkout to time in the same sitting")
    p.add_argument("--before-rows", default="0,1000,10000")
    p.add_argument("--before-runs", default="1000")
    p.add_argument("--cli-runs", default="", help="e.g. 1000,10000,100000: time `ckd sweep --dry-run` (a subprocess)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_scale_cpu2.json"))
    p.add_argument("--quiet-before", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    import harness
    from benchmarks.machine import machine_info

    result = {
        "harness": str(Path(harness.__path__[0]).parent),
        "machine": f"{os.cpu_count()} CPUs",
        "machine_info": machine_info(),
        "results_write_s": time_writes([int(x) for x in args.rows.split(",") if x]),
        "planning_s": time_planning([int(x) for x in args.runs.split(",") if x]),
    }
    if args.cli_runs:
        result["cli_dry_run"] = time_cli_planning([int(x) for x in args.cli_runs.split(",") if x])
    if args.before:
        print(f"--- before: {args.before}", flush=True)
        result["before"] = before(args.before, args.before_rows, args.before_runs, args.cli_runs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
