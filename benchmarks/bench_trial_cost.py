"""Per-trial cost of a real ``ckd sweep`` with packs of one vs a bare Ray Tune function trainable.

    python benchmarks/bench_trial_cost.py [--trials 2000 20000] [--before DIR] [--out FILE]

Side by side in one sitting, each side in its own process with its own local Ray cluster of
``--cpus`` CPUs (as a user runs them):

- **ckd**: the real CLI path, ``ckd sweep <config> sweep.seeds=range(0,N) sweep.pack_size=1`` on a
  tiny embedded-default store (MNIST-1D of ``--samples`` rows, one 1-epoch ``cnn1d_small`` teacher
  trained first with ``ckd teachers --local``): N one-epoch ``mlp_small`` students distilled from
  the ``full`` teacher, each its own Tune trial, rows written and verified. Timed: the seconds of
  its Tune experiments (the ``[sweep] Tune experiment ...: N trials ..., S s`` lines), i.e. what
  the trials cost, not planning or Ray's start; the whole command's wall time is recorded too.
- **bare**: ``tune.Tuner`` over a grid of the same N run dicts with a function trainable that
  reports once, ``reuse_actors=True``, timed around ``fit()``; cut into Tune experiments of
  ``--part`` trials (500, what ``ckd sweep`` does by default), because one Tune experiment slows
  with its trial count (``--bare-whole S`` times one Tuner for the whole grid too, stopped after
  S seconds).
- **compute**: the students' own work, the mean ``wall_time_s`` of the N result rows (data,
  teacher logits, model, one epoch of training and evaluation), so the harness's overhead per
  trial is ``ckd - compute``.
- ``--before DIR``: the ckd side again with an older checkout on ``PYTHONPATH`` (its own store).

Every side runs under whatever else the machine does; run it on a quiet machine
(``flock /tmp/bench.lock``) and compare the ratios, which come from one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # benchmarks.machine; never ahead of a --code / PYTHONPATH harness

from benchmarks.machine import machine_info  # noqa: E402

FIT_LINE = re.compile(r"\[sweep\] Tune experiment \S+: (\d+) trials .*?, ([\d.]+)s")

CONFIG = """name: trialcost
storage: {storage}
device: cpu
data: {{name: mnist1d, num_samples: {samples}, val_fraction: 0.1, batch_size: 128}}
teacher: {{archs: [cnn1d_small], seeds: [0], epochs: 1, checkpoint_every: 1}}
student: {{archs: [mlp_small], epochs: 1, batch_size: 32}}
distill: {{teacher_choice: full}}
sweep: {{teacher_choices: [full], temperature: [4.0], kd_weight: [0.5], seeds: [0], teacher_seeds: first, pack_size: 1}}
cluster: {{num_cpus: {cpus}, progress_interval_s: 60}}
tracking: {{mode: disabled}}
"""


def ckd(args: list[str], pythonpath: Path, log: Path) -> float:
    """Run ``python -m harness.cli <args>`` with ``pythonpath`` first; its wall seconds (output in ``log``)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "WANDB_MODE": "disabled"}
    began = time.perf_counter()
    with log.open("w") as out:
        # cwd: not this checkout (``python -m`` puts the working folder first on the path)
        cmd = [sys.executable, "-m", "harness.cli", *args]
        rc = subprocess.run(cmd, env=env, stdout=out, stderr=out, cwd=log.parent).returncode
    if rc not in (0,):
        raise SystemExit(f"ckd {' '.join(args)} exited {rc}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - began


def fit_seconds(log: Path) -> list[tuple[int, float]]:
    """(trials, seconds) of every Tune experiment a ``ckd sweep`` log reports."""
    return [(int(n), float(s)) for n, s in FIT_LINE.findall(log.read_text())]


def make_store(work: Path, name: str, samples: int, cpus: int, checkout: Path) -> Path:
    """A config and its store with the one teacher trained (``ckd teachers --local``)."""
    config = work / f"{name}.yaml"
    config.write_text(CONFIG.format(storage=work / f"store-{name}", samples=samples, cpus=cpus))
    ckd(["teachers", str(config), "--local"], checkout, work / f"{name}-teachers.log")
    return config


def ckd_side(config: Path, trials: int, checkout: Path, log: Path) -> dict:
    wall = ckd(["sweep", str(config), f"sweep.seeds=range(0,{trials})"], checkout, log)
    fits = fit_seconds(log)
    if sum(n for n, _ in fits) != trials:
        raise SystemExit(f"expected {trials} trials in {log}, found {fits}")
    rows = [json.loads(p.read_text()) for p in (config.parent / f"store-{config.stem}").glob("*/results/rows/*.json")]
    if len(rows) != trials:
        raise SystemExit(f"expected {trials} result rows, found {len(rows)}")
    fit_s = sum(s for _, s in fits)
    compute_ms = 1000 * sum(r["wall_time_s"] for r in rows) / len(rows)
    return {
        "fit_s": round(fit_s, 1),
        "tune_experiments": len(fits),
        "command_wall_s": round(wall, 1),
        "ms_per_trial": round(1000 * fit_s / trials, 1),
        "compute_ms_per_trial": round(compute_ms, 1),
        "overhead_ms_per_trial": round(1000 * fit_s / trials - compute_ms, 1),
    }


def bare_side(trials: int, cpus: int, storage: Path, part: int = 0, timeout_s: float | None = None) -> dict:
    """A bare Tune function trainable over the same grid, in a fresh process with its own cluster:
    one ``Tuner`` for the whole grid, or (``part``) one per ``part`` runs, as ``ckd sweep`` cuts a
    grid (``sweep.trials_per_experiment``). Past ``timeout_s`` it is stopped and said so."""
    code = f"""
import logging, time
import ray
from ray import tune
def noop(config):
    tune.report({{"val_acc": 0.5, "epoch": 1}})
runs = [{{"teacher_arch": "cnn1d_small", "teacher_seed": 0, "student_arch": "mlp_small", "teacher_choice": "full",
          "temperature": 4.0, "kd_weight": 0.5, "seed": i}} for i in range({trials})]
ray.init(num_cpus={cpus}, include_dashboard=False, logging_level=logging.WARNING)
size = {part} or len(runs)
began = time.perf_counter()
for k in range(0, len(runs), size):
    tune.Tuner(noop, param_space={{"run": tune.grid_search(runs[k : k + size])}},
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", reuse_actors=True),
        run_config=tune.RunConfig(name=f"bare{{k}}", storage_path={str(storage)!r}, verbose=0)).fit()
print("FIT", time.perf_counter() - began)
"""
    env = {**os.environ, "RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_THRESHOLD_S": "60"}
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True)
        return {"part": part or trials, "timed_out_s": timeout_s}
    fit = [line for line in out.stdout.splitlines() if line.startswith("FIT ")]
    if out.returncode or not fit:
        raise SystemExit(f"bare Tune failed: {out.stderr[-2000:]}")
    fit_s = float(fit[0].split()[1])
    return {"part": part or trials, "fit_s": round(fit_s, 1), "ms_per_trial": round(1000 * fit_s / trials, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, nargs="+", default=[2000])
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--samples", type=int, default=1000, help="MNIST-1D rows (train is ~80%%)")
    p.add_argument("--before", type=Path, help="an older checkout: its ckd side is timed too")
    p.add_argument("--after", type=Path, default=ROOT, help="the checkout timed as ckd (default: this one)")
    p.add_argument(
        "--part",
        type=int,
        default=500,
        help="bare Tune in experiments of this many trials, as ckd cuts a grid (0: one)",
    )
    p.add_argument(
        "--bare-whole", type=float, metavar="S", help="also one bare Tuner for the whole grid, stopped after S s"
    )
    p.add_argument("--work", help="where the stores and logs go (a temporary folder, removed after)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_trial_cost_cpu2.json"))
    args = p.parse_args()
    result: dict = {"machine_info": machine_info(1), "cpus": args.cpus, "samples": args.samples, "sizes": {}}
    checkouts = {"ckd": args.after.resolve()} | ({"ckd_before": args.before.resolve()} if args.before else {})
    with tempfile.TemporaryDirectory(dir=args.work) as d:
        work = Path(d)
        for trials in args.trials:
            sizes: dict = {}
            if args.bare_whole:  # one Tuner for the whole grid, as a bare script would run it
                sizes["bare_one_experiment"] = bare_side(trials, args.cpus, work / "tune-whole", 0, args.bare_whole)
                print(trials, "bare_one_experiment", sizes["bare_one_experiment"], flush=True)
            sizes["bare"] = bare_side(trials, args.cpus, work / f"tune-bare-{trials}", args.part)
            print(trials, "bare", sizes["bare"], flush=True)
            for side, checkout in checkouts.items():
                config = make_store(work, f"{side}-{trials}", args.samples, args.cpus, checkout)
                sizes[side] = ckd_side(config, trials, checkout, work / f"{side}-{trials}.log")
                bare_ms = sizes["bare"]["ms_per_trial"]
                sizes[side]["ratio_vs_bare"] = round(sizes[side]["ms_per_trial"] / bare_ms, 2)
                sizes[side]["overhead_ratio_vs_bare"] = round(sizes[side]["overhead_ms_per_trial"] / bare_ms, 2)
                print(trials, side, sizes[side], flush=True)
            result["sizes"][str(trials)] = sizes
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
