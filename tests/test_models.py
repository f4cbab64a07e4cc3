"""Model zoo: every registered model builds, agrees with its features, trains, and has the right size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.models import FeatureOutput, count_parameters, create_model, list_models

ONE_D = {"cnn1d_tiny", "cnn1d_small", "cnn1d_wide"}
MLPS = {"mlp_tiny", "mlp_small", "mlp_large"}
TWO_D = {
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "mobilenetv2", "mobilenetv2_x0_75",
}  # fmt: skip
ALL = sorted(ONE_D | MLPS | TWO_D)


def input_shape_for(name: str) -> tuple[int, ...]:
    return (3, 32, 32) if name in TWO_D else (1, 40)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registry_holds_exactly_the_zoo() -> None:
    assert sorted(list_models()) == ALL  # the order is the registry's (natural sort), the set is ours


@pytest.mark.parametrize("name", ALL)
def test_forward_matches_features(name: str) -> None:
    shape = input_shape_for(name)
    model = create_model(name, num_classes=7, input_shape=shape).eval()
    assert model.arch == name
    x = torch.randn(3, *shape)
    with torch.no_grad():
        logits = model(x)
        out = model.forward_features(x)
    assert isinstance(out, FeatureOutput)
    assert logits.shape == (3, 7)
    assert torch.allclose(out.logits, logits)
    assert out.penultimate.shape == (3, model.feature_dim)
    if name in MLPS:
        assert out.conv is None
    else:
        assert out.conv.dim() == len(shape) + 1
        assert out.conv.shape[0] == 3
        assert torch.allclose(out.conv.flatten(2).mean(2), out.penultimate)


@pytest.mark.parametrize("name", ALL)
def test_backward_reaches_every_parameter(name: str) -> None:
    shape = input_shape_for(name)
    model = create_model(name, num_classes=5, input_shape=shape).train()
    x = torch.randn(2, *shape)
    F.cross_entropy(model(x), torch.tensor([0, 3])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"


@pytest.mark.parametrize("name", sorted(TWO_D))
def test_image_models_take_tiny_grayscale_inputs(name: str) -> None:
    model = create_model(name, num_classes=10, input_shape=(1, 8, 8)).train()
    out = model.forward_features(torch.randn(2, 1, 8, 8))
    assert out.logits.shape == (2, 10)
    assert out.conv.dim() == 4


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


@pytest.mark.parametrize("name", sorted(ONE_D | TWO_D))
def test_wrong_input_rank_raises(name: str) -> None:
    wrong, rank = ((1, 40), 3) if name in TWO_D else ((3, 32, 32), 2)
    with pytest.raises(ValueError, match=rf"{name}.*rank {rank}"):
        create_model(name, num_classes=10, input_shape=wrong)


def test_mlps_flatten_any_input_shape() -> None:
    model = create_model("mlp_tiny", num_classes=4, input_shape=(3, 8, 8))
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(KeyError, match="resnet32.*wrn_40_2|wrn_40_2.*resnet32") as info:
        create_model("resnet33", num_classes=10, input_shape=(3, 32, 32))
    assert "resnet33" in str(info.value)
