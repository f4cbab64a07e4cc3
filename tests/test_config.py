"""Config errors fail before any training, with a one-line message naming the key."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.config import ConfigError
from harness.config_loading import load_config
from harness.registry import known_names
from harness.teacher_choices import describe_teacher_choices
from tests.helpers import QUICKSTART


def test_quickstart_loads_and_overrides_apply():
    cfg = load_config(QUICKSTART, ["teacher.epochs=12", "distill.temperature=2.5"])
    assert cfg.teacher.epochs == 12 and cfg.distill.temperature == 2.5
    assert cfg.data.name == "mnist1d" and cfg.teacher.archs == ["cnn1d_small"]


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("teacher.epochz=3", "teacher.epochz", "not in"),
        ("teacher.epochs=many", "teacher.epochs", "expected an integer"),
        ("teacher.epochs=-5", "teacher.epochs", "positive"),
        ("teacher.checkpoint_every=500", "teacher.checkpoint_every", "more than teacher.epochs"),
        ("teacher.archs=[resnet9000]", "teacher.archs[0]", "known: "),
        ("data.name=imagenet22k", "data.name", "mnist1d"),
        ("distill.teacher_choice=best_one", "teacher_choice", "known: epoch, fraction, full,"),
        ("distill.teacher_choice=fraktion:0.5", "teacher_choice", "did you mean 'fraction'?"),
        ("teacher.archs=[resnet56x]", "teacher.archs[0]", "did you mean 'resnet56'?"),
        ("data.name=mnist1", "data.name", "did you mean 'mnist1d'?"),
        ("scoring.estimators=[recn]", "scoring.estimators[0]", "did you mean 'recon'?"),
        ("teacher.optim.schedule=cosin", "teacher.optim.schedule", "did you mean 'cosine'?"),
        ("device=gpu", "device", "use auto, cpu, cuda"),
        ("distill.teacher_choice=fraction:1.5", "teacher_choice", "(0, 1]"),
        ("distill.teacher_choice=selected:magic", "teacher_choice", "known: "),
        ("distill.teacher_choice=selected:papr", "teacher_choice", "did you mean 'paper'?"),
        ("distill.kd_weight=1.5", "distill.kd_weight", "[0, 1]"),
        ("distill.ensemble_reduce=median", "distill.ensemble_reduce", "[probs, logits]"),
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


def test_closed_sets_are_enums_that_read_as_strings():
    cfg = load_config(QUICKSTART, ["distill.ensemble_reduce=logits", "sweep.scheduler=asha"])
    assert cfg.distill.ensemble_reduce == "logits" and f"{cfg.sweep.scheduler}" == "asha"
    assert str(cfg.teacher.optim.schedule) == "step"  # the quickstart's teacher schedule
    from harness.config import to_dict

    assert to_dict(cfg.distill)["ensemble_reduce"] == "logits" and type(to_dict(cfg.distill)["ensemble_reduce"]) is str


def test_a_typo_of_a_bare_distill_key_suggests_the_bare_key(tmp_path, capsys):
    rc = main(["distill", str(QUICKSTART), f"storage={tmp_path}", "teacher_choise=full"])
    err = capsys.readouterr().err
    assert rc == 2 and "'teacher_choise'" in err and "did you mean 'teacher_choice' (= distill.teacher_choice)?" in err
    assert err.count("\n") == 1 and not any(tmp_path.iterdir())


def test_list_sorts_naturally_and_explains_choices(capsys):
    assert main(["list", "models"]) == 0
    models = capsys.readouterr().out.split(": ", 1)[1].strip().split(", ")
    resnets = [m for m in models if m.startswith("resnet")]
    assert resnets == ["resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
    assert main(["list", "choices"]) == 0
    out = capsys.readouterr().out
    described = describe_teacher_choices()  # every choice, each with its syntax and example
    syntaxes = {s for s, _, _ in described}
    assert {"fraction:F", "snapshot:[a,b,...]", "selected:<selector>", "every_checkpoint"} <= syntaxes
    for syntax, example, _ in described:
        assert any(syntax in line and f"e.g. {example}" in line for line in out.splitlines()), (syntax, out)
    assert f"selectors for selected:<selector>: {', '.join(known_names('selector'))}" in out
    assert "selectors for selected:<selector>: accuracy, binning, ce, kde, paper" in out


def test_distill_accepts_local_like_the_other_verbs(tmp_path, capsys):
    rc = main(["distill", str(QUICKSTART), "--local", f"storage={tmp_path}", "student.epochs=0"])
    assert rc == 2 and "student.epochs" in capsys.readouterr().err  # parsed (not an argparse error), then validated
