"""Mixed precision and memory layout for training and inference (config ``precision``, ``channels_last``).

``precision=bf16`` runs the forward pass (and the loss) under ``torch.autocast`` with bfloat16:
convolutions and matmuls in bf16, reductions such as the cross-entropy in fp32, weights and
optimizer state in fp32. bf16 has fp32's exponent range, so no loss scaling is needed, and it
works on CPUs too (tests run it there). ``channels_last`` stores 4-D activations and conv weights
NHWC, the layout GPU tensor cores (and oneDNN on CPUs) prefer. Both default to off, which is
exactly the fp32, contiguous behaviour the harness always had. Only torch is imported.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device | str, precision: str = "fp32") -> contextlib.AbstractContextManager[None]:
    """The context to run forward passes in: bf16 autocast on ``device``'s type, or nothing (fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")


def memory_format(channels_last: bool) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format``."""
    return torch.channels_last if channels_last else torch.contiguous_format


def to_memory_format(x: Tensor, channels_last: bool) -> Tensor:
    """``x`` in channels_last layout if asked and 4-D (images); anything else unchanged."""
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def prepare_model(model: nn.Module, channels_last: bool) -> nn.Module:
    """``model`` with its 4-D parameters (conv weights) in channels_last layout if asked (in place)."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
