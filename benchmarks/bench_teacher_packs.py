"""Teacher packs against one at a time: trajectory-epochs per second on 1 torch thread (issue 23, point 4).

    python benchmarks/bench_teacher_packs.py [--setups cnn1d_small mlp_small resnet8] [--sizes 3 8]
        [--epochs 3] [--reps 1] [--mnist-samples 8000] [--image-samples 256] [--out FILE]

For each model setup and each N in ``--sizes`` the same seeds ``0..N-1`` train for ``--epochs``
epochs (the last one a checkpoint epoch, so its train/val/test evaluation is included), each mode
on a fresh temporary store, in one process, one after the other:

- **one**: ``teacher.pack_size=1``: N packs of one, one after another (a lone trajectory's path);
- **pack**: ``teacher.pack_size=N``: one pack of N (``harness.teachers.train_pack``);
- **pack3**: (N > 3 only) ``teacher.pack_size=3``: packs of 3, 3, 2.

Figures per mode: trajectory-epochs per second over the epoch loop (the manifests' history
``seconds``: training plus evaluation, a member charged its share of the pack's epoch), over the
training alone (the loop less the time in ``teacher_pack._evaluate``, timed here by wrapping
it), and over the whole call (data set, model build and checkpoint writes included); the ratio
of each to ``one``; and whether every member's last checkpoint (its sha256 in the manifest) is
the same in every mode (packing must not change a trajectory's bits on a CPU). Results are
merged into ``--out`` by setup (and by N within a setup of the same options), so setups can run
in separate (shorter) locked runs; each N records the ``machine_info(1)`` of its run.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import harness.teacher_pack as teacher_pack  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from harness.config_loading import load_config  # noqa: E402
from harness.teachers import teacher_packs, train_pack  # noqa: E402

QUICKSTART = ROOT / "configs" / "quickstart.yaml"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_teacher_packs_cpu2.json"
SETUPS = ("cnn1d_small", "mlp_small", "resnet8")


def setup_overrides(setup: str, mnist_samples: int, image_samples: int) -> list[str]:
    """The data and model of a setup on top of configs/quickstart.yaml (mnist1d rows cut to ``mnist_samples``)."""
    if setup in ("cnn1d_small", "mlp_small"):
        return [f"teacher.archs=[{setup}]", f"data.num_samples={mnist_samples}"]
    if setup == "resnet8":
        return [
            "teacher.archs=[resnet8]",
            "data.name=synthetic_cifar10",
            f"data.num_samples={image_samples}",
            "data.options={num_test: 64}",
            "data.batch_size=64",
        ]
    raise ValueError(f"unknown setup {setup!r}; known: {', '.join(SETUPS)}")


def make_cfg(storage: str, setup_over: list[str], seeds: int, epochs: int, pack_size: int):
    """The quickstart config for one timed mode: CPU, 1 thread, no tracking, a checkpoint at the last epoch."""
    over = [
        f"storage={storage}",
        f"teacher.seeds=[{','.join(str(s) for s in range(seeds))}]",
        f"teacher.epochs={epochs}",
        f"teacher.checkpoint_every={epochs}",
        f"teacher.pack_size={pack_size}",
        "tracking.mode=disabled",
        "threads=1",
        "device=cpu",
        *setup_over,
    ]
    return load_config(str(QUICKSTART), over)


class EvalClock:
    """Wraps ``teacher_pack._evaluate`` to add up the seconds the epoch loop spends evaluating."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._inner = teacher_pack._evaluate

    def __enter__(self) -> EvalClock:
        def timed(pack, names):
            began = time.perf_counter()
            try:
                return self._inner(pack, names)
            finally:
                self.seconds += time.perf_counter() - began

        teacher_pack._evaluate = timed
        return self

    def __exit__(self, *exc) -> None:
        teacher_pack._evaluate = self._inner


def time_mode(setup_over: list[str], seeds: int, epochs: int, pack_size: int) -> dict:
    """Train ``seeds`` trajectories in packs of ``pack_size`` on a fresh store; seconds and last-checkpoint sha256s."""
    storage = tempfile.mkdtemp(prefix="bench_teacher_packs_")
    try:
        cfg = make_cfg(storage, setup_over, seeds, epochs, pack_size)
        packs = teacher_packs(cfg)
        with EvalClock() as clock:
            began = time.perf_counter()
            manifests = [m for p in packs for m in train_pack(cfg, p.arch, p.seeds)]
            wall = time.perf_counter() - began
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    loop = sum(h["seconds"] for m in manifests for h in m["history"])
    return {
        "packs": [len(p.seeds) for p in packs],
        "trajectory_epochs": seeds * epochs,
        "loop_s": round(loop, 4),
        "eval_s": round(clock.seconds, 4),
        "train_s": round(loop - clock.seconds, 4),
        "wall_s": round(wall, 4),
        "last_ckpt_sha256": {m["name"]: m["checkpoints"][-1]["sha256"] for m in manifests},
    }


def summarize(runs: list[dict]) -> dict:
    """The fastest repetition of a mode (by loop seconds) with its rates in trajectory-epochs per second."""
    best = dict(min(runs, key=lambda r: r["loop_s"]))
    n = best["trajectory_epochs"]
    for key in ("loop", "train", "wall"):
        best[f"{key}_epochs_per_s"] = round(n / best[f"{key}_s"], 3) if best[f"{key}_s"] > 0 else None
    best["loop_s_runs"] = [r["loop_s"] for r in runs]
    best["shas_stable_over_reps"] = all(r["last_ckpt_sha256"] == runs[0]["last_ckpt_sha256"] for r in runs)
    return best


def bench_size(setup_over: list[str], seeds: int, epochs: int, reps: int) -> dict:
    """Modes one / pack (/ pack3) for ``seeds`` trajectories, repetitions in rotating order; ratios to ``one``."""
    sizes = {"one": 1, "pack": seeds, **({"pack3": 3} if seeds > 3 else {})}
    runs: dict[str, list[dict]] = {mode: [] for mode in sizes}
    for rep in range(reps):
        order = list(sizes)[rep % len(sizes) :] + list(sizes)[: rep % len(sizes)]
        for mode in order:
            runs[mode].append(time_mode(setup_over, seeds, epochs, sizes[mode]))
            print(f"  N={seeds} {mode:5s} loop {runs[mode][-1]['loop_s']:.2f}s", flush=True)
    modes = {mode: summarize(r) for mode, r in runs.items()}
    one = modes["one"]
    for res in modes.values():
        for key in ("loop", "train", "wall"):
            rate, base = res[f"{key}_epochs_per_s"], one[f"{key}_epochs_per_s"]
            res[f"{key}_ratio_to_one"] = round(rate / base, 3) if rate and base else None
        res["bits_equal_to_one"] = res["last_ckpt_sha256"] == one["last_ckpt_sha256"]
    return {"modes": modes, "bits_identical": all(m["bits_equal_to_one"] for m in modes.values())}


def table(results: dict) -> str:
    """A markdown table: setup, N, mode, packs, epochs/s (loop, train only, wall), ratios to one at a time, bits."""
    lines = [
        "| setup | N | mode | packs | ep/s loop | ep/s train | ep/s wall | loop x | train x | wall x | bits = one |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setup, res in results.items():
        for n, by_n in res["sizes"].items():
            for mode, m in by_n["modes"].items():
                lines.append(
                    f"| {setup} | {n} | {mode} | {'+'.join(map(str, m['packs']))} | {m['loop_epochs_per_s']} | "
                    f"{m['train_epochs_per_s']} | {m['wall_epochs_per_s']} | {m['loop_ratio_to_one']} | "
                    f"{m['train_ratio_to_one']} | {m['wall_ratio_to_one']} | {m['bits_equal_to_one']} |"
                )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=SETUPS)
    p.add_argument("--sizes", nargs="+", type=int, default=[3, 8], help="N: trajectories per comparison")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--reps", type=int, default=1, help="repetitions per mode (the fastest is kept)")
    p.add_argument("--mnist-samples", type=int, default=8000, help="mnist1d rows (the quickstart has 16000)")
    p.add_argument("--image-samples", type=int, default=256, help="synthetic_cifar10 training-pool rows")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    report = json.loads(args.out.read_text()) if args.out.exists() else {"setups": {}}
    info = machine_info(1)
    print(f"matmul {info['matmul_gflops']} GFLOP/s (1 thread), load {info['load_avg_1m']}", flush=True)
    for setup in args.setups:
        over = setup_overrides(setup, args.mnist_samples, args.image_samples)
        print(f"{setup}: {over}", flush=True)
        time_mode(over, 1, 1, 1)  # warm-up, not kept: first-call costs (imports, kernels) charge no mode
        sizes = {str(n): {**bench_size(over, n, args.epochs, args.reps), "machine_info": info} for n in args.sizes}
        before = report["setups"].get(setup, {})
        if (before.get("overrides"), before.get("epochs"), before.get("reps")) == (over, args.epochs, args.reps):
            sizes = {**before["sizes"], **sizes}  # the same setup run N by N in separate (locked) runs
        report["setups"][setup] = {"overrides": over, "epochs": args.epochs, "reps": args.reps, "sizes": sizes}
    report["machine_info"] = info
    report["notes"] = (
        "1 torch thread, configs/quickstart.yaml + overrides; loop = manifests' history seconds (train + eval), "
        "train = loop less teacher_pack._evaluate, wall = whole train_pack calls (incl. building the data set "
        "once per fresh store: MNIST-1D generation is ~4 s at 16000 rows, and per-epoch resume/checkpoint writes); "
        "ratios to one-at-a-time, measured side by side in one process"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report["setups"]))


if __name__ == "__main__":
    main()
