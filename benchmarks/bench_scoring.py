"""Benchmark of the MI scorer (issue 3, point 5): shared pass vs one checkpoint at a time.

    python benchmarks/bench_scoring.py [--config configs/quickstart.yaml] [--storage DIR]
                                       [--arch cnn1d_small] [--repeats 2] [--out FILE] [overrides...]

1. trains one teacher trajectory of the config (``harness.teachers.train_trajectory``; skipped
   when ``--storage`` already holds it finished);
2. times one training epoch of the same architecture on the same data (median of 3 epochs after
   one warm-up, plain SGD step loop of ``harness.training.train_epoch``);
3. scores the trajectory with all configured estimators, side by side in one run, ``--repeats``
   times each, alternating: the **shared pass** (``score_trajectory``: every data batch loaded
   once and fed to all checkpoints, decoders trained side by side) and **one checkpoint at a time**
   (``shared=False``: a separate data pass and decoder training per checkpoint);
4. prints (and with ``--out`` writes) a JSON report: seconds per mode, per-estimator seconds,
   the shared-pass speed-up, and the scoring time per checkpoint in units of one training epoch.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from harness.config import seed_list  # noqa: E402
from harness.config_loading import load_config  # noqa: E402
from harness.data import make_loader  # noqa: E402
from harness.experiment import load_splits, open_store, set_threads  # noqa: E402
from harness.models import create_model  # noqa: E402
from harness.scoring.runner import score_trajectory  # noqa: E402
from harness.scoring.sample import build_scoring_data  # noqa: E402
from harness.scoring.scores_file import scores_path  # noqa: E402
from harness.store import trajectory_name  # noqa: E402
from harness.teachers import train_trajectory  # noqa: E402
from harness.training import make_optimizer, resolve_device, train_epoch  # noqa: E402


def epoch_seconds(cfg, arch: str, device: torch.device, epochs: int = 3) -> float:
    """Median wall time of one training epoch of ``arch`` (after one warm-up epoch)."""
    splits = load_splits(cfg)
    train = splits.train.to(device) if hasattr(splits.train, "to") else splits.train
    model = create_model(arch, num_classes=splits.num_classes, input_shape=splits.input_shape).to(device)
    opt = make_optimizer(model, cfg.teacher.optim)
    ce = lambda logits, x, y: torch.nn.functional.cross_entropy(logits, y)  # noqa: E731
    times = []
    for epoch in range(epochs + 1):
        batches = make_loader(train, cfg.data.batch_size, shuffle=True, seed=0, epoch=epoch, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_epoch(model, batches, opt, ce, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if epoch > 0:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    p.add_argument("--storage", default=None, help="store to train into / reuse (default: a temp dir)")
    p.add_argument("--arch", default=None, help="teacher arch (default: the config's first)")
    p.add_argument("--seed", type=int, default=None, help="teacher seed (default: the config's first)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=None, help="also write the JSON report here")
    p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. teacher.epochs=20")
    args = p.parse_args(argv)

    storage = args.storage or tempfile.mkdtemp(prefix="bench-scoring-")
    cfg = load_config(args.config, [f"storage={storage}", "tracking.mode=disabled", *args.overrides])
    set_threads(cfg, "scorer")
    machine = machine_info(cuda=resolve_device(cfg.device).type == "cuda")
    arch = args.arch or cfg.teacher.archs[0]
    seed = seed_list(cfg.teacher)[0] if args.seed is None else args.seed
    device = resolve_device(cfg.device)
    store = open_store(cfg)
    name = trajectory_name(arch, cfg.data.name, seed)

    t0 = time.perf_counter()
    manifest = train_trajectory(cfg, arch, seed)
    train_s = time.perf_counter() - t0
    k = len(manifest["checkpoints"])
    print(f"[bench] trajectory {name}: {k} checkpoints ({train_s:.1f}s to train or load)", flush=True)

    one_epoch = epoch_seconds(cfg, arch, device)
    print(f"[bench] one training epoch of {arch}: {one_epoch:.3f}s", flush=True)

    data = build_scoring_data(cfg)
    path = scores_path(store, name)
    runs: dict[str, list[dict]] = {"shared": [], "one_at_a_time": []}
    for r in range(args.repeats):
        order = ["shared", "one_at_a_time"] if r % 2 == 0 else ["one_at_a_time", "shared"]
        for mode in order:
            path.unlink(missing_ok=True)  # score from scratch
            t0 = time.perf_counter()
            summary = score_trajectory(cfg, store, name, data, shared=(mode == "shared"))
            wall = time.perf_counter() - t0
            runs[mode].append({"wall_s": wall, **summary["timings"]})
            print(f"[bench] {mode:14s} repeat {r}: {wall:.2f}s", flush=True)

    def best(mode: str) -> dict:
        return min(runs[mode], key=lambda t: t["wall_s"])

    shared, alone = best("shared"), best("one_at_a_time")
    report = {
        "trajectory": name,
        "arch": arch,
        "checkpoints": k,
        "scoring_samples": len(data),
        "estimators": list(cfg.scoring.estimators),
        "recon": dict(cfg.scoring.recon),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "machine_info": machine,
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "one_training_epoch_s": round(one_epoch, 4),
        "shared": {k2: shared[k2] for k2 in ("wall_s", "load_s", "features_s", "estimators_s")},
        "one_at_a_time": {k2: alone[k2] for k2 in ("wall_s", "load_s", "features_s", "estimators_s")},
        "all_runs_wall_s": {m: [round(t["wall_s"], 3) for t in v] for m, v in runs.items()},
        "shared_pass_speedup": round(alone["wall_s"] / shared["wall_s"], 3),
        "per_checkpoint_s": {"shared": round(shared["wall_s"] / k, 4), "one_at_a_time": round(alone["wall_s"] / k, 4)},
        "per_checkpoint_in_training_epochs": {
            "shared": round(shared["wall_s"] / k / one_epoch, 3),
            "one_at_a_time": round(alone["wall_s"] / k / one_epoch, 3),
        },
    }
    print(json.dumps(report, indent=2, default=str))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


if __name__ == "__main__":
    main()
