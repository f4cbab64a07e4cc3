"""CIFAR ResNets (He et al. 2016, Sec. 4.2): depth 6n+2, BasicBlocks, stages of 16/32/64 channels.

Shortcuts are "option A" (parameter-free: stride-2 subsample plus zero-padded channels), which is
what gives the usual parameter counts (ResNet-32 ~0.46M, ResNet-110 ~1.7M) that the paper's
ResNet-110 teacher and ResNet-32 student have.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from harness.models.base import (
    FeatureOutput,
    ZooModel,
    check_input_shape,
    global_avg_pool,
    init_weights,
    register_model,
)


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the channels up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_channels - in_channels
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = PadShortcut(in_channels, out_channels, stride) if needs_projection else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(ZooModel):
    """ResNet-(6n+2) for small images; ``first_stride=2`` halves the resolution at the stem (64x64 inputs)."""

    def __init__(
        self,
        depth: int,
        num_classes: int,
        input_shape: Sequence[int],
        *,
        first_stride: int = 1,
        widths: Sequence[int] = (16, 32, 64),
        arch: str | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch or f"resnet{depth}"
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"{self.arch}: CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        in_channels = check_input_shape(self.arch, input_shape, 3, "(C, H, W)")[0]
        blocks_per_stage = (depth - 2) // 6

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, first_stride, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        channels = widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(BasicBlock(channels, width, stride if j == 0 else 1))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.feature_dim = channels
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> FeatureOutput:
        conv = self.stages(self.stem(x))
        penultimate = global_avg_pool(conv)
        return FeatureOutput(conv, penultimate, self.fc(penultimate))


@register_model("resnet8")
def resnet8(num_classes: int, input_shape: Sequence[int], **kwargs) -> CifarResNet:
    return CifarResNet(8, num_classes, input_shape, arch="resnet8", **kwargs)


@register_model("resnet14")
def resnet14(num_classes: int, input_shape: Sequence[int], **kwargs) -> CifarResNet:
    return CifarResNet(14, num_classes, input_shape, arch="resnet14", **kwargs)


@register_model("resnet20")
def resnet20(num_classes: int, input_shape: Sequence[int], **kwargs) -> CifarResNet:
    return CifarResNet(20, num_classes, input_shape, arch="resnet20", **kwargs)


@register_model("resnet32")
def resnet32(num_classes: int, input_shape: Sequence[int], **kwargs) -> CifarResNet:
    return CifarResNet(32, num_classes, input_shape, arch="resnet32", **kwargs)


@register_model("resnet44")
def resnet44(num_classes: int, input_shape: Sequence[int], **kwargs) -> CifarResNet:
    return CifarResNet(44, num_classes, input_shape, arch="resnet44", **kwargs)


@register_model("resnet56")
def resnet56(num_classes: int, input_shape: Sequence[int], **kwargs) -> CifarResNet:
    return CifarResNet(56, num_classes, input_shape, arch="resnet56", **kwargs)


@register_model("resnet110")
def resnet110(num_classes: int, input_shape: Sequence[int], **kwargs) -> CifarResNet:
    return CifarResNet(110, num_classes, input_shape, arch="resnet110", **kwargs)
