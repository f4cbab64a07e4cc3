"""The ``recon`` decoders as one module: K independent InfoPro-style decoders, grouped convolutions.

``GroupedDecoder`` upsamples a conv stage to the input's size, 3x3 conv -> hidden ch + BN + ReLU
-> 3x3 conv -> input ch (logits of x^); with K = 1 it is exactly the paper's decoder. The first
conv runs at the features' low resolution and is then interpolated (the same linear map, fewer
multiply-adds). ``to_unit_interval`` maps the inputs to the [0, 1] targets. See ``recon.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import ScoringError


def to_unit_interval(x: Tensor, ref: Tensor | None = None) -> Tensor:
    """Map inputs [N, C, *spatial] to [0, 1] per channel with the min / max of ``ref`` (default
    ``x``), clamped: (x - min_c) / (max_c - min_c)."""
    ref = x if ref is None else ref
    dims = [d for d in range(x.dim()) if d != 1]
    lo = ref.amin(dim=dims, keepdim=True)
    hi = ref.amax(dim=dims, keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0)


def _interp_mode(out_size: Sequence[int]) -> str:
    return "linear" if len(out_size) == 1 else "bilinear"


_TAPS: dict[tuple, Tensor] = {}


def _tap_matrices(n_in: int, n_out: int, align_corners: bool, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[3, n_out, n_in]``: V_t[i, j] = U[i + t - 1, j] (0 outside), U the 1-D linear
    interpolation matrix from n_in to n_out points (exactly ``F.interpolate``'s), t a conv tap."""
    key = (n_in, n_out, align_corners, str(device), dtype)
    if key not in _TAPS:
        eye = torch.eye(n_in, dtype=torch.float64)[None]
        u = F.interpolate(eye, size=n_out, mode="linear", align_corners=align_corners)[0].T  # [n_out, n_in]
        padded = F.pad(u, (0, 0, 1, 1))  # zero rows: the conv's zero padding
        _TAPS[key] = torch.stack([padded[t : t + n_out] for t in range(3)]).to(device, dtype)
    return _TAPS[key]


class GroupedDecoder(nn.Module):
    """K independent reconstruction decoders evaluated as one module (grouped convolutions).

    Input ``[B, K*C, *s]`` (checkpoint k's features in channels k*C..(k+1)*C), output logits
    ``[B, K*C_in, *S]``. With K = 1 this is exactly the paper's decoder (before its sigmoid).
    """

    def __init__(
        self,
        k: int,
        feat_channels: int,
        out_channels: int,
        hidden: int,
        out_size: Sequence[int],
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.k, self.feat_channels, self.out_channels, self.hidden = k, feat_channels, out_channels, hidden
        self.out_size = tuple(int(s) for s in out_size)
        self.align_corners = align_corners
        if len(self.out_size) not in (1, 2):
            raise ScoringError(f"recon supports 1-D and 2-D inputs, got spatial size {self.out_size}")
        conv = nn.Conv1d if len(self.out_size) == 1 else nn.Conv2d
        norm = nn.BatchNorm1d if len(self.out_size) == 1 else nn.BatchNorm2d
        self.mode = _interp_mode(self.out_size)
        self.conv1 = conv(k * feat_channels, k * hidden, 3, padding=1, groups=k)
        self.bn = norm(k * hidden)
        self.conv2 = conv(k * hidden, k * out_channels, 3, padding=1, groups=k)

    def like(self, k: int) -> GroupedDecoder:
        """A fresh module of ``k`` decoders with this one's shape."""
        return GroupedDecoder(k, self.feat_channels, self.out_channels, self.hidden, self.out_size, self.align_corners)

    def copy_into_every_group(self, single: GroupedDecoder) -> None:
        """Give every decoder of this group the parameters of the one-decoder module ``single``."""
        with torch.no_grad():
            for mine, theirs in zip(self.state_dict().values(), single.state_dict().values()):
                if mine.dim() == 0:  # BatchNorm's num_batches_tracked
                    mine.copy_(theirs)
                else:
                    mine.copy_(theirs.repeat(self.k, *([1] * (theirs.dim() - 1))))

    def forward(self, feats: Tensor) -> Tensor:
        in_size = tuple(feats.shape[2:])
        if in_size == self.out_size:
            hidden = self.conv1(feats)
        elif all(a <= b for a, b in zip(in_size, self.out_size)):
            hidden = self._upsample_then_conv1(feats)
        else:
            hidden = self.conv1(
                F.interpolate(feats, size=self.out_size, mode=self.mode, align_corners=self.align_corners)
            )
        return self.conv2(F.relu(self.bn(hidden)))

    def _upsample_then_conv1(self, feats: Tensor) -> Tensor:
        """``conv1(interpolate(feats))`` computed at the features' low resolution.

        Both maps are linear, so conv1 applied to the upsampled map equals sum over the kernel's
        taps t of V_t (W_t feats): each tap's 1x1 conv runs on the small map, then a fixed
        matrix V_t = (shift by t) o (interpolation) takes it to the output size (per axis; bilinear
        is separable). Same function, (out / in size) times fewer multiply-adds in the first conv
        (4x for mnist1d, 256x for CIFAR's 2x2 maps); tested against the direct order.
        """
        k, c, h = self.k, self.feat_channels, self.hidden
        dims = len(self.out_size)
        taps = 3**dims
        w = self.conv1.weight.reshape(k, h, c, taps).permute(0, 3, 1, 2).reshape(k * taps * h, c, *([1] * dims))
        g = (F.conv1d if dims == 1 else F.conv2d)(feats, w, groups=k)  # [B, k*taps*h, *in]
        b = feats.shape[0]
        mats = [
            _tap_matrices(n_in, n_out, self.align_corners, g.device, g.dtype)
            for n_in, n_out in zip(feats.shape[2:], self.out_size)
        ]
        if dims == 1:
            out = torch.einsum("bkthj,tij->bkhi", g.reshape(b, k, 3, h, -1), mats[0])
        else:
            g = g.reshape(b, k, 3, 3, h, *feats.shape[2:])
            g = torch.einsum("bkxyhpq,yjq->bkxhpj", g, mats[1])
            out = torch.einsum("bkxhpj,xip->bkhij", g, mats[0])
        return out.reshape(b, k * h, *self.out_size) + self.conv1.bias.reshape(1, k * h, *([1] * dims))
