"""Layers of N models at once whose every member computes exactly as it would alone.

A pack runs N models of one architecture as one network in a *folded* layout: activations are
``[B, N*C, ...]``, member-major along the channels (features for linear layers), so channel-wise
code of the model (ReLU, residual adds, pooling, flatten) runs unchanged. Each layer with
parameters is replaced by a packed one holding the members' stacked parameters ``[N, ...]``:

* ``PackedLinear``: the plain layer for a pack of one; batched products for a pack, whose
  gradients are computed as autograd computes them for one member (``_MemberAffine``);
* ``PackedConv``: on a CPU, member by member: each member's convolution is the very call it
  makes alone (oneDNN picks other kernels for a grouped convolution than for a plain one, e.g.
  for 1x1 and few-channel convolutions, whose weight gradients then round differently; member
  by member cost 10-30% more than grouped on conv students here); on a GPU one grouped
  convolution (``groups = N * groups``), fast but not checked for bit-identity (no GPU here);
* ``PackedBatchNorm``: batch norm over the ``N*C`` channels (per member and channel, as alone);
* ``PackedPadShortcut``: the ResNet option-A shortcut, padded per member.

The point is reproducibility: every kernel here gives each member the same bits whatever N is
and whoever its partners are (``tests/test_pack_bits.py`` checks every registered model), so a
student's result does not depend on how a sweep packed it, and a pack of one, the same code, is
as fast as the plain module. ``fold`` builds the packed network; a model with a layer this
module does not know is refused with its name.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.models.resnet import PadShortcut

PAD = 64  # elements: each member's slice of a stored parameter is a multiple of it (PackedLayer)
VECTOR = 16  # float32 lanes of the widest vector unit (AVX-512): batched sums over such widths agree


def _stack(tensors: Sequence[Tensor]) -> Tensor:
    return torch.stack([t.detach() for t in tensors])


class PackedLayer(nn.Module):
    """A layer of N members with stacked parameters ``[N, *shape]``; one whose member size is no
    multiple of ``PAD`` is stored flat and padded, ``[N, P]`` (zeros after each member's
    values), and used as a ``[N, *shape]`` view.

    The padding is for the optimizer: torch's fused SGD updates a tensor in vector steps and its
    last elements in a scalar loop that rounds differently (no fused multiply-add), so without
    it a member's last values, or a member that lands in another pack's tail, would be updated
    with other rounding. With every member a whole number of vector steps, no member value is
    ever in the tail. The zeros stay zero (zero gradient, zero weight decay, zero momentum).
    """

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[str, tuple[int, ...]] = {}  # padded parameter name -> a member's shape
        self.views: dict[tuple[str, bool], Tensor | None] = {}

    def _stack_parameter(self, name: str, tensors: Sequence[Tensor]) -> None:
        stacked = _stack(tensors)
        numel = stacked[0].numel()
        if numel % PAD == 0:  # whole vector steps already: stored as [N, *shape]
            self.register_parameter(name, nn.Parameter(stacked))
        else:
            flat = F.pad(stacked.reshape(len(tensors), numel), (0, (-numel) % PAD))
            self.register_parameter(f"{name}_padded", nn.Parameter(flat))
            self.shapes[name] = tuple(stacked.shape[1:])

    def stacked(self, name: str) -> Tensor | None:
        """Parameter ``name`` as ``[N, *shape]`` (a view of the padded storage when padded: writes
        go through), or None if the layer has none."""
        return self._view(name, squeeze=False)

    def member(self, name: str) -> Tensor | None:
        """A pack of one's parameter ``name`` as the plain layer's ``[*shape]`` (a view)."""
        return self._view(name, squeeze=True)

    def _view(self, name: str, squeeze: bool) -> Tensor | None:
        # made once (with autograd on, so gradients flow through it to the stored parameter)
        # and reused: a few Python calls less per layer and step, which a pack of one of small
        # students pays in full; the in-place SGD updates the storage the views share
        key = (name, squeeze)
        if key not in self.views:
            with torch.enable_grad():
                if name in self.shapes:
                    leaf = getattr(self, f"{name}_padded")
                    view = leaf[:, : math.prod(self.shapes[name])].view(leaf.shape[0], *self.shapes[name])
                else:
                    view = getattr(self, name, None)
                self.views[key] = view.squeeze(0) if squeeze and view is not None else view
        return self.views[key]

    def _apply(self, fn, recurse: bool = True):  # .to() and friends may swap the storage: views anew
        self.views.clear()
        return super()._apply(fn, recurse)

    def stacked_parameters(self) -> dict[str, Tensor]:
        """Every parameter as ``[N, *shape]``, by its name in a member."""
        names = [n for n, _ in self.named_parameters(recurse=False)]
        return {n.removesuffix("_padded"): self.stacked(n.removesuffix("_padded")) for n in names}


class _MemberAffine(torch.autograd.Function):
    """``F.linear`` of N members at once ([N, B, in] -> [N, B, out]) whose every member gets the
    bits ``F.linear`` and its autograd give it alone: the forward is ``baddbmm`` (per member
    the same product as ``addmm``), the input and weight gradients are ``bmm`` of the operands
    autograd multiplies alone (``g @ W``, ``g^T @ x``), and the bias gradient is the same sum
    over the batch, ``g.sum(1)``, or member by member when ``out`` is no multiple of
    ``VECTOR`` (a batched sum then rounds in an order that changes with N)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        kind = x.device.type
        if torch.is_autocast_enabled(kind):  # compute (and differentiate) in the autocast dtype
            dtype = torch.get_autocast_dtype(kind)
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        wt = weight.transpose(1, 2)
        with torch.autocast(kind, enabled=False):
            return torch.bmm(x, wt) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, wt)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_b = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            aligned = grad.shape[2] % VECTOR == 0
            grad_b = grad.sum(1) if aligned else torch.stack([g.sum(0) for g in grad])
        return grad_x, grad_w, grad_b


class PackedLinear(PackedLayer):
    """N linear layers: ``[B, N*in]`` or ``[B, N, in]`` -> ``[B, N, out]`` (a view of the
    ``[N, B, out]`` result: the next linear layer takes it without a copy; ``flatten(1)`` of it
    is the folded ``[B, N*out]``). A pack of one: ``[B, in] -> [B, out]``, the plain layer."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.n, self.in_features, self.out_features = len(layers), layers[0].in_features, layers[0].out_features
        self._stack_parameter("weight", [m.weight for m in layers])
        if layers[0].bias is not None:
            self._stack_parameter("bias", [m.bias for m in layers])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (2, 3):
            raise ValueError(f"a packed linear layer takes [batch, members*features]; got shape {tuple(x.shape)}")
        b = x.shape[0]
        if self.n == 1:  # the plain layer; packs give each member its bits (_MemberAffine)
            return F.linear(x.reshape(b, self.in_features), self.member("weight"), self.member("bias"))
        xm = x.view(b, self.n, self.in_features).transpose(0, 1) if x.dim() == 2 else x.transpose(0, 1)  # [N, B, in]
        return _MemberAffine.apply(xm, self.stacked("weight"), self.stacked("bias")).transpose(0, 1)


class PackedConv(PackedLayer):
    """N convolutions (1-D or 2-D, zero padding): ``[B, N*C_in, ...] -> [B, N*C_out, ...]``."""

    def __init__(self, layers: Sequence[nn.Conv1d | nn.Conv2d]) -> None:
        super().__init__()
        first = layers[0]
        if first.padding_mode != "zeros" or isinstance(first.padding, str):
            raise ValueError("a packed convolution needs zero padding given as numbers")
        self.n, self.groups, self.out_channels = len(layers), first.groups, first.out_channels
        self.conv = F.conv1d if isinstance(first, nn.Conv1d) else F.conv2d
        self.args = (first.stride, first.padding, first.dilation)
        self._stack_parameter("weight", [m.weight for m in layers])
        if first.bias is not None:
            self._stack_parameter("bias", [m.bias for m in layers])

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.stacked("weight"), self.stacked("bias")
        if not x.is_cuda:
            if self.n == 1:
                return self.conv(x, self.member("weight"), self.member("bias"), *self.args, self.groups)
            cin = x.shape[1] // self.n
            biases = [None] * self.n if bias is None else bias.unbind(0)
            outs = [  # unbind, not indexing: one backward copy instead of one per member
                self.conv(x[:, i * cin : (i + 1) * cin], w, b, *self.args, self.groups)
                for i, (w, b) in enumerate(zip(weight.unbind(0), biases))
            ]
            return torch.cat(outs, dim=1)
        return self.conv(
            x, weight.flatten(0, 1), None if bias is None else bias.flatten(), *self.args, self.n * self.groups
        )


class PackedBatchNorm(PackedLayer):
    """N batch norms over ``[B, N*C, ...]``: statistics per member and channel, stacked buffers."""

    def __init__(self, layers: Sequence[nn.modules.batchnorm._BatchNorm]) -> None:
        super().__init__()
        first = layers[0]
        self.n = len(layers)
        self.eps, self.momentum, self.track, self.affine = (
            first.eps,
            first.momentum,
            first.track_running_stats,
            first.affine,
        )
        if self.affine:
            self._stack_parameter("weight", [m.weight for m in layers])
            self._stack_parameter("bias", [m.bias for m in layers])
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, _stack([getattr(m, name) for m in layers]) if self.track else None)

    def forward(self, x: Tensor) -> Tensor:
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked[0])
        use_batch_stats = self.training or not self.track
        flat = [None if t is None else t.view(-1) for t in (self.running_mean, self.running_var)]
        if not self.affine:
            weight = bias = None
        elif self.n == 1:
            weight, bias = self.member("weight"), self.member("bias")
        else:
            weight, bias = self.stacked("weight").reshape(-1), self.stacked("bias").reshape(-1)
        return F.batch_norm(x, flat[0], flat[1], weight, bias, use_batch_stats, momentum, self.eps)


class PackedPadShortcut(nn.Module):
    """N option-A shortcuts: subsample, zero-pad each member's channels."""

    def __init__(self, layers: Sequence[PadShortcut]) -> None:
        super().__init__()
        self.n, self.stride, self.pad = len(layers), layers[0].stride, layers[0].pad

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        b, nc, h, w = x.shape
        x = F.pad(x.reshape(b, self.n, nc // self.n, h, w), (0, 0, 0, 0, *self.pad))
        return x.reshape(b, -1, h, w)


PACKED: dict[type, Callable[[Sequence[nn.Module]], nn.Module]] = {
    nn.Linear: PackedLinear,
    nn.Conv1d: PackedConv,
    nn.Conv2d: PackedConv,
    nn.BatchNorm1d: PackedBatchNorm,
    nn.BatchNorm2d: PackedBatchNorm,
    PadShortcut: PackedPadShortcut,
}
CHANNELWISE = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Identity, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)


def fold(models: Sequence[nn.Module]) -> nn.Module:
    """The packed network of ``models`` (one architecture): their layers replaced by packed ones
    holding copies of the members' parameters and buffers; names as in each member's
    ``state_dict``, tensors ``[N, ...]``."""
    net = copy.deepcopy(models[0])
    members = [dict(m.named_modules()) for m in models]
    for name, module in list(net.named_modules()):
        packer = PACKED.get(type(module))
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            raise ValueError(f"cannot pack layer {name!r} (dropout): its draws would depend on the pack")
        if packer is not None:
            _set(net, name, packer([m[name] for m in members]))
        elif not isinstance(module, CHANNELWISE) and _owns_tensors(module):
            raise ValueError(
                f"cannot pack layer {name!r} ({type(module).__name__}): packs know "
                f"{', '.join(sorted(t.__name__ for t in PACKED))} and parameter-free channel-wise layers"
            )
    return net


def _owns_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
