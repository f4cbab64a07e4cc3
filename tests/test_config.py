"""Config errors fail before any training, with a one-line message naming the key."""
from __future__ import annotations

import pytest

from harness.cli import main
from harness.config import ConfigError, load_config
from tests.conftest import QUICKSTART


def test_quickstart_loads_and_overrides_apply():
    cfg = load_config(QUICKSTART, ["teacher.epochs=12", "distill.temperature=2.5"])
    assert cfg.teacher.epochs == 12 and cfg.distill.temperature == 2.5
    assert cfg.data.name == "mnist1d" and cfg.teacher.archs == ["cnn1d_small"]


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("teacher.epochz=3", "teacher.epochz", "not in"),
        ("teacher.epochs=many", "teacher.epochs", "Integer"),
        ("teacher.epochs=-5", "teacher.epochs", "positive"),
        ("teacher.checkpoint_every=500", "teacher.checkpoint_every", "more than teacher.epochs"),
        ("teacher.archs=[resnet9000]", "teacher.archs[0]", "known: "),
        ("data.name=imagenet22k", "data.name", "mnist1d"),
        ("distill.teacher_choice=best_one", "teacher_choice", "known kinds"),
        ("distill.teacher_choice=fraction:1.5", "teacher_choice", "(0, 1]"),
        ("distill.teacher_choice=selected:magic", "teacher_choice", "known: paper"),
        ("distill.kd_weight=1.5", "distill.kd_weight", "[0, 1]"),
        ("distill.ensemble_reduce=median", "distill.ensemble_reduce", "logits, probs"),
        ("tracking.mode=loud", "tracking.mode", "offline"),
    ],
)
def test_bad_values_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(QUICKSTART, [override])
    msg = str(err.value)
    assert key in msg and words in msg and "\n" not in msg


def test_missing_file_and_malformed_override():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("configs/nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(QUICKSTART, ["teacher.epochs"])


def test_cli_reports_config_error_before_training(tmp_path, capsys):
    rc = main(["teachers", str(QUICKSTART), f"storage={tmp_path}", "teacher.epochs=0"])
    assert rc == 2
    assert "teacher.epochs" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was created, no compute spent


@pytest.mark.parametrize("path", sorted((QUICKSTART.parent).rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.teacher.checkpoint_every <= cfg.teacher.epochs
