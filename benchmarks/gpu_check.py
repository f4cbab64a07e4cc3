"""GPU check of the core (no Ray, no W&B): a short teacher trajectory, a distillation and the
scorer through the same functions the cluster layer calls, on ``cuda`` and on ``cpu`` side by
side, plus training-step throughput of the paper's CIFAR models on random 32x32 batches.

    python benchmarks/gpu_check.py [--epochs 6] [--out result.json]

Prints one JSON object; median epoch seconds per device and the GPU/CPU ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from harness.config_loading import load_config  # noqa: E402
from harness.distill import distill_student  # noqa: E402
from harness.models import create_model  # noqa: E402
from harness.teachers import train_trajectory  # noqa: E402


def pipeline_times(device: str, epochs: int, storage: Path, arch: str) -> dict:
    cfg = load_config(
        ROOT / "configs" / "quickstart.yaml",
        [
            f"storage={storage}",
            f"device={device}",
            "teacher.seeds=[0]",
            f"teacher.archs=[{arch}]",
            f"teacher.epochs={epochs}",
            f"teacher.checkpoint_every={max(1, epochs // 2)}",
            f"student.epochs={epochs}",
            "distill.teacher_choice=fraction:0.5",
            "tracking.mode=disabled",
        ],
    )
    manifest = train_trajectory(cfg, arch, 0)
    per_epoch = [h["seconds"] for h in manifest["history"]]
    began = time.perf_counter()
    row = distill_student(cfg)
    out = {
        "teacher_epoch_s_median": statistics.median(per_epoch[1:] or per_epoch),
        "teacher_first_epoch_s": per_epoch[0],
        "teacher_test_acc": manifest["checkpoints"][-1]["test_acc"],
        "student_s_per_epoch": (time.perf_counter() - began) / epochs,
        "student_test_acc": row["final_test_acc"],
        "device_used": manifest["device"],
    }
    try:
        from harness.scoring.runner import run_scoring
    except ImportError:
        return out
    began = time.perf_counter()
    run_scoring(cfg)
    out["scoring_s"] = time.perf_counter() - began
    return out


def step_throughput(arch: str, device: str, steps: int, batch: int = 128) -> float:
    """Seconds per SGD step (forward + backward) on random CIFAR-shaped data."""
    model = create_model(arch, num_classes=100, input_shape=(3, 32, 32)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--archs", default="cnn1d_small,cnn1d_wide")
    parser.add_argument("--cifar-models", default="resnet32,wrn_40_2,resnet110,mobilenetv2_x0_75")
    args = parser.parse_args()
    devices = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
    result: dict = {
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "machine_info": machine_info(),  # CPU GFLOP/s and, on a GPU, its bf16/fp32 matmul TFLOP/s
        "pipeline": {},
        "steps": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            for device in devices:
                result["pipeline"][f"{arch}/{device}"] = pipeline_times(
                    device, args.epochs, Path(tmp) / device / arch, arch
                )
                print(json.dumps({f"{arch}/{device}": result["pipeline"][f"{arch}/{device}"]}), flush=True)
    for arch in args.cifar_models.split(","):
        for device in devices:
            result["steps"][f"{arch}/{device}"] = step_throughput(arch, device, steps=30 if device == "cuda" else 3)
        print(json.dumps({arch: {d: result["steps"][f"{arch}/{d}"] for d in devices}}), flush=True)
    if "cuda" in devices:
        result["ratios_cpu_over_gpu"] = {
            **{
                f"{a}/teacher_epoch": result["pipeline"][f"{a}/cpu"]["teacher_epoch_s_median"]
                / result["pipeline"][f"{a}/cuda"]["teacher_epoch_s_median"]
                for a in args.archs.split(",")
            },
            **{
                f"{a}/step": result["steps"][f"{a}/cpu"] / result["steps"][f"{a}/cuda"]
                for a in args.cifar_models.split(",")
            },
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
