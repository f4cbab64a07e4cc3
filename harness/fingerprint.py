"""Where a number was computed: the environment fingerprint every row, manifest and scores file carries.

Bit-identical results are promised for one machine and one software stack; a fingerprint says
which. ``environment(device, threads, precision)`` names the harness (version, git commit, whether
its source differs from that commit), the software (Python, torch, CUDA, cuDNN), the hardware
(device name, the CPU instruction set level torch dispatches to) and the settings that change
numerics (torch threads, precision, deterministic-algorithm flags, TF32, oneDNN, the float32
matmul precision). ``differing`` lists the fields in which two fingerprints differ: ``ckd verify``
reports them next to a number that moved. ``state_sha256`` hashes a state dict's tensors bit for
bit (a student's final weights in its result row).
"""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

SOURCE = Path(__file__).resolve().parent  # the harness package


@functools.cache
def harness_version() -> str:
    try:
        return metadata.version("ckd-harness")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def source_commit() -> tuple[str, bool]:
    """The git commit of the harness source and whether ``harness/`` differs from it ("unknown",
    False outside a git checkout, e.g. an installed wheel)."""
    try:
        root = SOURCE.parent
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "harness"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return head, bool(status)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


@functools.cache
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def environment(device: torch.device | str, threads: int | None = None, precision: str = "fp32") -> dict[str, Any]:
    """The fingerprint of a computation on ``device`` with ``threads`` torch threads (default:
    the current setting) at ``precision``."""
    device = torch.device(device)
    commit, dirty = source_commit()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "harness": harness_version(),
        "commit": commit,
        "source_modified": dirty,
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # (a TorchVersion: plain text, as JSON and the safe loader take it)
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "device": device.type,
        "device_name": device_name(device),
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),
        "threads": int(threads if threads is not None else torch.get_num_threads()),
        "precision": precision,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32) if device.type == "cuda" else None,
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def differing(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """The fields in which fingerprints ``a`` and ``b`` differ (a missing fingerprint: every
    field of the other; neither: none). A field one lacks differs even where the other's is null."""
    a, b, missing = a or {}, b or {}, object()
    return sorted(k for k in set(a) | set(b) if a.get(k, missing) != b.get(k, missing))


def state_sha256(state_dict: Mapping[str, Any]) -> str:
    """sha256 of a state dict's tensors, bit for bit: each entry's name, dtype, shape and raw bytes,
    in sorted key order (so the order of the dict does not matter, and any flipped bit does).
    Tensors may live on any device and have any layout; a value that is no tensor is refused."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state_sha256: entry {name!r} is of type {type(t).__name__}, not a tensor")
        raw = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # any dtype (bf16, bool) as bytes
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0{raw.numel()}\n".encode())
        h.update(raw.numpy())
    return h.hexdigest()
