"""The machine a benchmark ran on, with its measured matmul rate, so that figures can be compared
across machines (issue 22, point 6): a ratio measured on a CPU with a 1.5x slower matmul is not
the same ratio.

    python benchmarks/machine.py [--threads N] [--no-cuda]      (prints the JSON object)

From a script, with the repository root on ``sys.path``::

    from benchmarks.machine import machine_info
    report["machine_info"] = machine_info(torch.get_num_threads())

Pure torch + stdlib (no Ray, W&B or OmegaConf), so it imports on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

CPU_N = 1024  # float32 (N x N) @ (N x N): 2 N^3 = 2.15 GFLOP per product
CPU_REPEATS = 10  # best of: on shared cores single products vary by 2x
CUDA_N = 8192  # large enough to keep an H100 busy (1.1 TFLOP per product)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform`` where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _best_seconds(fn, repeats: int, sync=lambda: None) -> float:
    """The fastest of ``repeats`` timed calls of ``fn`` after one warm-up call."""
    fn()
    sync()
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - began)
    return best


def cpu_matmul_gflops(n: int = CPU_N, repeats: int = CPU_REPEATS) -> float:
    """GFLOP/s of a float32 ``n``^3 matmul at the current torch thread count (best of ``repeats``)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    seconds = _best_seconds(lambda: torch.mm(a, b, out=out), repeats)
    return 2 * n**3 / seconds / 1e9


def cuda_info(n: int = CUDA_N, repeats: int = 5) -> dict:
    """The first CUDA device's name and its bf16 / fp32 matmul TFLOP/s (fp32 under the current
    TF32 setting, which is recorded); empty when CUDA is not available."""
    if not torch.cuda.is_available():
        return {}
    out: dict = {
        "name": torch.cuda.get_device_name(0),
        "fp32_allows_tf32": torch.backends.cuda.matmul.allow_tf32,
        "matmul_n": n,
    }
    for label, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        seconds = _best_seconds(lambda a=a, b=b: torch.mm(a, b), repeats, torch.cuda.synchronize)
        out[f"{label}_matmul_tflops"] = round(2 * n**3 / seconds / 1e12, 1)
        del a, b
    torch.cuda.empty_cache()
    return out


def machine_info(threads: int | None = None, cuda: bool | None = None) -> dict:
    """The machine's description and float32 matmul GFLOP/s at ``threads`` torch threads (default:
    the current setting, which is restored afterwards). ``cuda`` (default: when available) adds
    the GPU's name and matmul TFLOP/s under ``"cuda"``."""
    before = torch.get_num_threads()
    try:
        if threads is not None and threads > 0:
            torch.set_num_threads(threads)
        used = torch.get_num_threads()
        gflops = cpu_matmul_gflops()
    finally:
        torch.set_num_threads(before)
    info = {
        "matmul_gflops": round(gflops, 1),
        "matmul": f"float32 {CPU_N}x{CPU_N} @ {CPU_N}x{CPU_N}, best of {CPU_REPEATS}",
        "threads": used,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available() if cuda is None else cuda:
        info["cuda"] = cuda_info()
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads for the CPU matmul (default: torch's)")
    p.add_argument("--no-cuda", action="store_true", help="skip the GPU matmul even where CUDA is available")
    args = p.parse_args()
    print(json.dumps(machine_info(args.threads, cuda=False if args.no_cuda else None), indent=2))


if __name__ == "__main__":
    main()
