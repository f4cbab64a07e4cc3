"""Wide ResNets (Zagoruyko & Komodakis 2016): depth 6n+4, widen factor k, pre-activation blocks.

Stage widths are 16k, 32k, 64k after a 16-channel stem; a block whose shape changes gets a 1x1
conv shortcut. The network ends in BN-ReLU before pooling, so the last conv stage we expose is
that activated map. Matches the WRN-40-2 teacher / WRN-40-1 student of the paper (no dropout).
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


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus shortcut.

    When the shape changes, the shortcut is a 1x1 conv applied to the pre-activated input (as in
    the reference implementation), otherwise it is the identity on the raw input.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        same_shape = stride == 1 and in_channels == out_channels
        self.shortcut = None if same_shape else nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(ZooModel):
    """WRN-depth-k; ``first_stride=2`` halves the resolution at the stem (64x64 inputs)."""

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int,
        input_shape: Sequence[int],
        *,
        first_stride: int = 1,
        arch: str | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch or f"wrn_{depth}_{widen_factor}"
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"{self.arch}: WRN depth must be 6n+4 with n >= 1, got {depth}")
        in_channels = check_input_shape(self.arch, input_shape, 3, "(C, H, W)")[0]
        blocks_per_stage = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]

        self.stem = nn.Conv2d(in_channels, 16, 3, first_stride, 1, bias=False)
        stages = []
        channels = 16
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(PreActBlock(channels, width, stride if j == 0 else 1))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(channels)
        self.feature_dim = channels
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> FeatureOutput:
        conv = F.relu(self.final_bn(self.stages(self.stem(x))))
        penultimate = global_avg_pool(conv)
        return FeatureOutput(conv, penultimate, self.fc(penultimate))


@register_model("wrn_16_1")
def wrn_16_1(num_classes: int, input_shape: Sequence[int], **kwargs) -> WideResNet:
    return WideResNet(16, 1, num_classes, input_shape, arch="wrn_16_1", **kwargs)


@register_model("wrn_16_2")
def wrn_16_2(num_classes: int, input_shape: Sequence[int], **kwargs) -> WideResNet:
    return WideResNet(16, 2, num_classes, input_shape, arch="wrn_16_2", **kwargs)


@register_model("wrn_40_1")
def wrn_40_1(num_classes: int, input_shape: Sequence[int], **kwargs) -> WideResNet:
    return WideResNet(40, 1, num_classes, input_shape, arch="wrn_40_1", **kwargs)


@register_model("wrn_40_2")
def wrn_40_2(num_classes: int, input_shape: Sequence[int], **kwargs) -> WideResNet:
    return WideResNet(40, 2, num_classes, input_shape, arch="wrn_40_2", **kwargs)
