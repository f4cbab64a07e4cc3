"""1-D CNNs for short signals such as MNIST-1D (input_shape ``(C, L)``, e.g. ``(1, 40)``).

Each layer is conv(k=3, pad=1)-BN-ReLU; a layer that widens the channels also halves the length
(stride 2), then global average pooling and a linear head. ``cnn1d_small`` (32-32-64-64-128,
~48k parameters) is the quickstart teacher sized by the CPU pilot.
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


class CNN1d(ZooModel):
    """Stack of conv1d-BN-ReLU layers with ``channels[i]`` outputs each.

    ``strides`` defaults to 2 where a layer has more channels than the one before it, else 1
    (32-32-64-64-128 on length 40 gives lengths 40, 40, 20, 20, 10).
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        *,
        channels: Sequence[int] = (32, 32, 64, 64, 128),
        strides: Sequence[int] | None = None,
        arch: str = "cnn1d",
    ) -> None:
        super().__init__()
        self.arch = arch
        in_channels = check_input_shape(arch, input_shape, 2, "(C, L)")[0]
        if not channels:
            raise ValueError(f"{arch}: channels must not be empty")
        if strides is None:
            previous = [in_channels, *channels[:-1]]
            strides = [2 if i > 0 and c > p else 1 for i, (c, p) in enumerate(zip(channels, previous))]
        if len(strides) != len(channels):
            raise ValueError(f"{arch}: got {len(strides)} strides for {len(channels)} conv layers")

        layers: list[nn.Module] = []
        for out_channels, stride in zip(channels, strides):
            layers += [
                nn.Conv1d(in_channels, out_channels, 3, stride, 1, bias=False),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.feature_dim = in_channels
        self.fc = nn.Linear(in_channels, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> FeatureOutput:
        conv = self.features(x)
        penultimate = global_avg_pool(conv)
        return FeatureOutput(conv, penultimate, self.fc(penultimate))


@register_model("cnn1d_tiny")
def cnn1d_tiny(num_classes: int, input_shape: Sequence[int], **kwargs) -> CNN1d:
    return CNN1d(num_classes, input_shape, channels=(16, 16, 32, 32, 64), arch="cnn1d_tiny", **kwargs)


@register_model("cnn1d_small")
def cnn1d_small(num_classes: int, input_shape: Sequence[int], **kwargs) -> CNN1d:
    return CNN1d(num_classes, input_shape, channels=(32, 32, 64, 64, 128), arch="cnn1d_small", **kwargs)


@register_model("cnn1d_wide")
def cnn1d_wide(num_classes: int, input_shape: Sequence[int], **kwargs) -> CNN1d:
    return CNN1d(num_classes, input_shape, channels=(64, 64, 128, 128, 256), arch="cnn1d_wide", **kwargs)
