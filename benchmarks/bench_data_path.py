"""Images per second of CIFAR-shaped training: the device data path vs the DataLoader path.

    python benchmarks/bench_data_path.py [--quick] [--device auto] [--num-samples 20000]
        [--epochs 2] [--batch-size 128] [--workers 0,4] [--teacher wrn_40_2]
        [--students 8] [--student-arch resnet8] [--precisions fp32,bf16] [--channels-last both]
        [--out benchmarks/results/bench_data_path_<machine>.json]

On ``synthetic_cifar10`` (generated, no files) with the paper's augmentation, side by side in
one process, for every combination of data path (``device``: uint8 images on the device,
pad/crop/flip batched there; ``dataloader/wN``: torchvision transforms in N loader workers),
precision (fp32 | bf16 autocast) and layout (channels_last off | on), three workloads:

* ``loader``: one epoch of batches only (the data path's ceiling);
* ``teacher``: training epochs of the teacher (``harness.training.train_epoch``, as
  ``ckd teachers`` runs them);
* ``students``: a plain forward/backward/step of ``--students`` small students in sequence on
  every batch (images/s counts each batch once; ``student_images_per_s`` counts it per student).

Each measure follows one warm-up pass of a few batches; the result is the median over
``--epochs`` timed epochs. Prints a table and writes the JSON (``--out``). Imports only torch
and the harness modules ``data``, ``models``, ``precision`` and ``training`` (no OmegaConf, Ray
or W&B), so it runs on a bare GPU machine. ``--quick`` (a few hundred images, CPU-sized) runs
in under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from harness.data import DataSplits, build_splits, make_loader, to_device_images  # noqa: E402
from harness.models import create_model  # noqa: E402
from harness.precision import autocast, prepare_model, to_memory_format  # noqa: E402
from harness.training import train_epoch  # noqa: E402

logger = logging.getLogger(__name__)
WARMUP_BATCHES = 3


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], Any]) -> float:
    """Wall seconds of ``fn()``, the device's queued work included."""
    sync(device)
    began = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - began


def loader_for(split: Any, path: str, batch_size: int, epoch: int, device: torch.device) -> Iterable:
    """The training batches of ``epoch`` on ``path`` (``device`` or ``dataloader/wN``)."""
    workers = 0 if path == "device" else int(path.split("/w")[1])
    return make_loader(split, batch_size, shuffle=True, seed=0, epoch=epoch, device=device, num_workers=workers)


def first_batches(batches: Iterable, n: int) -> list:
    out = []
    for b in batches:
        out.append(b)
        if len(out) == n:
            break
    return out


def run_loader(split: Any, path: str, args: argparse.Namespace, device: torch.device, **_: Any) -> list[float]:
    """Seconds per epoch of just producing the batches on ``device``."""

    def epoch(e: int) -> None:
        for x, _ in loader_for(split, path, args.batch_size, e, device):
            x.sum()  # touch the batch (forces the copy of the DataLoader path)

    first_batches(loader_for(split, path, args.batch_size, 0, device), WARMUP_BATCHES)
    return [timed(device, lambda e=e: epoch(e)) for e in range(1, args.epochs + 1)]


def run_teacher(
    split: Any,
    path: str,
    args: argparse.Namespace,
    device: torch.device,
    *,
    precision: str,
    channels_last: bool,
    num_classes: int,
) -> list[float]:
    """Seconds per training epoch of the teacher, through ``harness.training.train_epoch``."""
    torch.manual_seed(0)
    model = prepare_model(
        create_model(args.teacher, num_classes=num_classes, input_shape=(3, 32, 32)).to(device), channels_last
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def epoch(batches: Iterable) -> None:
        train_epoch(
            model,
            batches,
            opt,
            lambda logits, x, y: F.cross_entropy(logits, y),
            device,
            precision=precision,
            channels_last=channels_last,
        )

    epoch(first_batches(loader_for(split, path, args.batch_size, 0, device), WARMUP_BATCHES))
    return [
        timed(device, lambda e=e: epoch(loader_for(split, path, args.batch_size, e, device)))
        for e in range(1, args.epochs + 1)
    ]


def run_students(
    split: Any,
    path: str,
    args: argparse.Namespace,
    device: torch.device,
    *,
    precision: str,
    channels_last: bool,
    num_classes: int,
) -> list[float]:
    """Seconds per epoch of ``--students`` students stepping in sequence on every batch."""
    torch.manual_seed(0)
    models = [
        prepare_model(
            create_model(args.student_arch, num_classes=num_classes, input_shape=(3, 32, 32)).to(device), channels_last
        )
        for _ in range(args.students)
    ]
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in models]

    def epoch(batches: Iterable) -> None:
        for x, y in batches:
            x = to_memory_format(x.to(device, non_blocking=True), channels_last)
            y = y.to(device, non_blocking=True)
            for model, opt in zip(models, opts):
                with autocast(device, precision):
                    loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    for m in models:
        m.train()
    epoch(first_batches(loader_for(split, path, args.batch_size, 0, device), WARMUP_BATCHES))
    return [
        timed(device, lambda e=e: epoch(loader_for(split, path, args.batch_size, e, device)))
        for e in range(1, args.epochs + 1)
    ]


WORKLOADS = {"loader": run_loader, "teacher": run_teacher, "students": run_students}


def measure(splits: dict[str, DataSplits], args: argparse.Namespace, device: torch.device) -> list[dict]:
    """One row per (workload, precision, channels_last, path); the loader ignores precision and
    layout. The paths of one setting run one after the other, so a busy machine hits them alike."""
    rows = []
    n = len(splits["device"].train)
    for workload, fn in WORKLOADS.items():
        if workload == "students" and args.students == 0:
            continue
        combos = (
            [("fp32", False)] if workload == "loader" else [(p, c) for p in args.precisions for c in args.channels_last]
        )
        for precision, cl in combos:
            for path in ["device", *(f"dataloader/w{w}" for w in args.workers)]:
                split = splits["device" if path == "device" else "dataloader"].train
                secs = fn(
                    split,
                    path,
                    args,
                    device,
                    precision=precision,
                    channels_last=cl,
                    num_classes=splits["device"].num_classes,
                )
                med = statistics.median(secs)
                row = {
                    "workload": workload,
                    "path": path,
                    "precision": precision,
                    "channels_last": cl,
                    "images": n,
                    "epoch_s": [round(s, 4) for s in secs],
                    "epoch_s_median": round(med, 4),
                    "images_per_s": round(n / med, 1),
                }
                if workload == "students":
                    row["student_images_per_s"] = round(n * args.students / med, 1)
                rows.append(row)
                print(
                    f"[bench] {workload:8s} {path:14s} {precision} cl={int(cl)}: {row['images_per_s']:10.1f} img/s",
                    flush=True,
                )
    return rows


def speedups(rows: list[dict]) -> list[dict]:
    """Device path over each DataLoader path, per (workload, precision, channels_last)."""
    by_key = {(r["workload"], r["path"], r["precision"], r["channels_last"]): r["images_per_s"] for r in rows}
    out = []
    for (workload, path, precision, cl), ips in by_key.items():
        dev = by_key.get((workload, "device", precision, cl))
        if path != "device" and dev:
            out.append(
                {
                    "workload": workload,
                    "vs": path,
                    "precision": precision,
                    "channels_last": cl,
                    "device_over_dataloader": round(dev / ips, 2),
                }
            )
    return out


def table(rows: list[dict]) -> str:
    """A markdown table of the rows."""
    lines = [
        "| workload | path | precision | channels_last | images/s | epoch s (median) |",
        "|---|---|---|---|---:|---:|",
    ]
    for r in rows:
        ips = f"{r['images_per_s']:.1f}"
        if "student_images_per_s" in r:
            ips += f" ({r['student_images_per_s']:.0f} student-img/s)"
        lines.append(
            f"| {r['workload']} | {r['path']} | {r['precision']} | {'on' if r['channels_last'] else 'off'} "
            f"| {ips} | {r['epoch_s_median']:.3f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized: 288 training images, 1 timed epoch, workers 0")
    p.add_argument("--device", default="auto", help="auto (cuda if visible), cpu, cuda, cuda:N")
    p.add_argument("--num-samples", type=int, default=20000, help="synthetic training pool (10%% carved as val)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per measure (median reported)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", default="0,4", help="DataLoader worker counts to compare, e.g. 0,4,8")
    p.add_argument("--teacher", default="wrn_40_2")
    p.add_argument("--students", type=int, default=8, help="students stepped in sequence (0: skip)")
    p.add_argument("--student-arch", default="resnet8")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--channels-last", default="both", choices=["both", "off", "on"])
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--out", default=None, help="write the JSON report here")
    args = p.parse_args(argv)
    if args.quick:
        args.num_samples, args.epochs, args.workers = 320, 1, "0"
    args.workers = [int(w) for w in str(args.workers).split(",") if w != ""]
    args.precisions = [s for s in args.precisions.split(",") if s]
    args.channels_last = {"both": [False, True], "off": [False], "on": [True]}[args.channels_last]
    return args


def environment(device: torch.device, args: argparse.Namespace) -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15_before": [round(v, 2) for v in os.getloadavg()],  # was the machine busy?
        "machine_info": machine_info(cuda=device.type == "cuda"),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    began, env = time.perf_counter(), environment(device, args)
    with tempfile.TemporaryDirectory() as tmp:
        plain = build_splits(
            "synthetic_cifar10",
            storage_dir=tmp,
            seed=0,
            val_fraction=0.1,
            augment=True,
            num_samples=args.num_samples,
            num_test=10,
        )
    splits = {"dataloader": plain, "device": to_device_images(plain, device)}
    print(f"[bench] {len(plain.train)} synthetic CIFAR-shaped training images on {device}", flush=True)
    rows = measure(splits, args, device)
    env["load_avg_1_5_15_after"] = [round(v, 2) for v in os.getloadavg()]
    report = {
        "benchmark": "bench_data_path",
        "environment": env,
        "rows": rows,
        "device_over_dataloader": speedups(rows),
        "wall_s": round(time.perf_counter() - began, 1),
    }
    print(table(rows))
    for s in report["device_over_dataloader"]:
        print(
            f"[bench] {s['workload']:8s} device / {s['vs']} ({s['precision']}, cl={int(s['channels_last'])}): "
            f"{s['device_over_dataloader']:.2f}x"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"[bench] wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
