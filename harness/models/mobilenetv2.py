"""MobileNetV2 (Sandler et al. 2018) in the CIFAR variant of the CRD/RepDistiller code base.

That variant, which the paper's code (LeapLabTHU/CheckpointKD) copies, differs from the ImageNet
network in three ways that we keep so results are comparable:
- the second stage (24 channels) has stride 1 instead of 2, so the total downsampling is 16
  (32x32 -> 2x2) with the stride-2 stem;
- every inverted residual block has the 1x1 expansion conv, also the first one with t=1;
- channels are ``int(c * width_mult)`` without rounding to multiples of 8, and the final 1x1 conv
  keeps 1280 channels for ``width_mult <= 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from harness.models.base import (
    FeatureOutput,
    ZooModel,
    check_input_shape,
    global_avg_pool,
    init_weights,
    register_model,
)

STAGES: tuple[tuple[int, int, int, int], ...] = (
    # expansion t, channels c, blocks n, first stride s
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand - 3x3 depthwise - 1x1 linear projection; residual when the shape is unchanged."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, hidden, 1),
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


class MobileNetV2(ZooModel):
    """MobileNetV2 with expansion 6 and a width multiplier.

    ``first_stride`` is the stem's stride. Its default here is 2, the value of the reference code
    for both CIFAR (32x32) and Tiny-ImageNet (64x64); ``first_stride=1`` keeps full resolution in
    the first stages (4x the compute).
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        *,
        width_mult: float = 1.0,
        first_stride: int = 2,
        arch: str | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch or f"mobilenetv2_w{width_mult:g}"
        if width_mult <= 0:
            raise ValueError(f"{self.arch}: width_mult must be > 0, got {width_mult}")
        in_channels = check_input_shape(self.arch, input_shape, 3, "(C, H, W)")[0]
        self.width_mult = width_mult

        channels = max(1, int(32 * width_mult))
        self.stem = conv_bn_relu(in_channels, channels, 3, first_stride)
        stages = []
        for expansion, c, n, s in STAGES:
            width = max(1, int(c * width_mult))
            blocks = []
            for j in range(n):
                blocks.append(InvertedResidual(channels, width, s if j == 0 else 1, expansion))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        last_channels = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.head = conv_bn_relu(channels, last_channels, 1)
        self.feature_dim = last_channels
        self.fc = nn.Linear(last_channels, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> FeatureOutput:
        conv = self.head(self.stages(self.stem(x)))
        penultimate = global_avg_pool(conv)
        return FeatureOutput(conv, penultimate, self.fc(penultimate))


@register_model("mobilenetv2")
def mobilenetv2(num_classes: int, input_shape: Sequence[int], **kwargs) -> MobileNetV2:
    return MobileNetV2(num_classes, input_shape, arch="mobilenetv2", **kwargs)


@register_model("mobilenetv2_x0_75")
def mobilenetv2_x0_75(num_classes: int, input_shape: Sequence[int], **kwargs) -> MobileNetV2:
    kwargs.setdefault("width_mult", 0.75)
    return MobileNetV2(num_classes, input_shape, arch="mobilenetv2_x0_75", **kwargs)
