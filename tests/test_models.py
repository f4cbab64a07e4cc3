"""Model zoo specifics: the zoo is registered, strides, sizes, width multipliers, flattening, unknown names."""

from __future__ import annotations

import pytest
import torch

from harness.models import count_parameters, create_model, list_models

# The zoo the design names (DESIGN.md section 3); the registry may hold more. Every registered model is
# built, run and trained on every input shape it accepts in tests/test_registries.py.
ZOO = {
    "cnn1d_tiny", "cnn1d_small", "cnn1d_wide", "mlp_tiny", "mlp_small", "mlp_large",
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "mobilenetv2", "mobilenetv2_x0_75",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registry_holds_the_zoo() -> None:
    assert set(list_models()) >= ZOO  # order and uniqueness: tests/test_registries.py


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "mobilenetv2_x0_75"])
def test_first_stride_halves_the_resolution(name: str) -> None:
    x = torch.randn(2, 3, 32, 32)
    sizes = {}
    for stride in (1, 2):
        model = create_model(name, num_classes=10, input_shape=(3, 32, 32), first_stride=stride).eval()
        with torch.no_grad():
            sizes[stride] = model.forward_features(x).conv.shape[-1]
    assert sizes[2] * 2 == sizes[1]


@pytest.mark.parametrize(
    ("name", "num_classes", "input_shape", "target"),
    [
        ("resnet32", 100, (3, 32, 32), 0.46e6),
        ("resnet110", 100, (3, 32, 32), 1.7e6),
        ("wrn_40_1", 100, (3, 32, 32), 0.57e6),
        ("wrn_40_2", 100, (3, 32, 32), 2.2e6),
        ("cnn1d_small", 10, (1, 40), 48e3),
        ("mlp_small", 10, (1, 40), 40 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10),
    ],
)
def test_parameter_counts_match_the_usual_figures(
    name: str, num_classes: int, input_shape: tuple[int, ...], target: float
) -> None:
    n = count_parameters(create_model(name, num_classes, input_shape))
    assert abs(n - target) <= 0.05 * target, f"{name}: {n} parameters, expected ~{target:.0f}"


def test_width_mult_kwarg_scales_mobilenetv2() -> None:
    shape = (3, 32, 32)
    x075 = count_parameters(create_model("mobilenetv2_x0_75", 100, shape))
    assert count_parameters(create_model("mobilenetv2", 100, shape, width_mult=0.75)) == x075
    assert count_parameters(create_model("mobilenetv2", 100, shape)) > x075
    assert count_parameters(create_model("mobilenetv2_x0_75", 100, shape, width_mult=0.5)) < x075


def test_mlps_flatten_any_input_shape() -> None:
    model = create_model("mlp_tiny", num_classes=4, input_shape=(3, 8, 8))
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(KeyError, match="resnet32.*wrn_40_2|wrn_40_2.*resnet32") as info:
        create_model("resnet33", num_classes=10, input_shape=(3, 32, 32))
    assert "resnet33" in str(info.value)
