"""Every registry entry is tested through its registry (as timm's tests are): a new model, dataset,
teacher choice, MI estimator, normalization or selector is picked up here without editing a list.

- models: every model builds for every probe input shape it accepts (and explains the ones it
  refuses), agrees with its features and trains one step with finite gradients everywhere;
- datasets: every builder takes the common arguments and names an option it does not take;
- teacher choices: every documented example parses, prints back to itself and resolves against a
  tiny finished store (choices that need scores: a clear "run `ckd score`" error first, then
  they resolve once the store is scored); ``selected:<selector>`` for every selector likewise;
- MI estimators: finite values and finite error bars on a tiny case, and the cheapest known answer that
  applies to every estimator: a checkpoint whose features copy the signal scores above one whose
  features are constant, on each term the estimator reports;
- normalizations: finite, order-preserving, NaN stays NaN;
- selectors: every selector is evaluated by the selector evaluation (report/selectors.py).
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.config import ScoringConfig
from harness.config_loading import load_config
from harness.data import build_splits, dataset_options, list_datasets
from harness.experiment import open_store
from harness.models import FeatureOutput, create_model, list_models
from harness.registry import natural_key
from harness.report.selectors import evaluate_selectors
from harness.scoring import list_estimators, list_normalizations, list_selectors
from harness.scoring.base import CheckpointFeatures, ScoringData, TensorConvSource, build_estimator
from harness.scoring.normalization import normalize
from harness.scoring.replicates import standard_error
from harness.scoring.runner import run_scoring
from harness.scoring.scores_file import read_all_scores
from harness.teacher_choices import (
    ResolveContext,
    TeacherChoice,
    TeacherRef,
    describe_teacher_choices,
    list_teacher_choices,
    parse_teacher_choice,
    resolve_teacher_choice,
)
from harness.teachers import train_trajectory
from tests.helpers import QUICKSTART, tiny_overrides
from tests.synthetic_results import result_row

# ----------------------------------------------------------------------------- models

# a 1-D signal, a small RGB image, a tiny grayscale image (small images keep this fast: every model
# pools globally; CIFAR's 32x32 is exercised by test_models.py's stride and size tests)
PROBE_SHAPES = [(1, 40), (3, 16, 16), (1, 8, 8)]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _build_or_refusal(name: str, shape: tuple[int, ...]) -> torch.nn.Module | str:
    """The model for ``shape``, or the message of the ValueError it refuses the shape with."""
    try:
        return create_model(name, num_classes=7, input_shape=shape)
    except ValueError as e:
        return str(e)


def _check_forward_matches_features(name: str, model: torch.nn.Module, shape: tuple[int, ...], flat: bool) -> None:
    model.eval()
    x = torch.randn(3, *shape)
    with torch.no_grad():
        logits = model(x)
        out = model.forward_features(x)
    assert isinstance(out, FeatureOutput)
    assert logits.shape == (3, 7), (name, shape)
    assert torch.allclose(out.logits, logits)
    assert out.penultimate.shape == (3, model.feature_dim)
    if flat:  # takes inputs of any rank (an MLP): no conv stage
        assert out.conv is None, (name, shape)
    else:
        assert out.conv.dim() == len(shape) + 1 and out.conv.shape[0] == 3, (name, shape)
        assert torch.allclose(out.conv.flatten(2).mean(2), out.penultimate)


def _check_backward_reaches_every_parameter(name: str, model: torch.nn.Module, shape: tuple[int, ...]) -> None:
    model.train()
    loss = F.cross_entropy(model(torch.randn(2, *shape)), torch.tensor([0, 3]))
    assert torch.isfinite(loss), (name, shape)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name} {shape}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name} {shape}: non-finite gradient for {pname}"


def test_models_are_listed_once_in_natural_order() -> None:
    names = list_models()
    assert names and len(set(names)) == len(names) and names == sorted(names, key=natural_key)


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_runs_and_trains_on_the_shapes_it_accepts(name: str) -> None:
    built = {shape: _build_or_refusal(name, shape) for shape in PROBE_SHAPES}
    accepted = {shape: m for shape, m in built.items() if not isinstance(m, str)}
    assert accepted, f"{name} accepts none of {PROBE_SHAPES}: {built}"
    ranks = sorted({len(shape) for shape in accepted})
    for shape, refusal in built.items():
        if isinstance(refusal, str):  # says which rank it wants (one it accepts) and what it got
            assert re.search(rf"{name}.*rank ({'|'.join(map(str, ranks))})\b", refusal), refusal
            assert f"rank {len(shape)}" in refusal, refusal
    flat = len(accepted) == len(PROBE_SHAPES) and len(ranks) > 1
    for shape, model in accepted.items():
        assert model.arch == name
        _check_forward_matches_features(name, model, shape, flat)
        _check_backward_reaches_every_parameter(name, model, shape)


# ----------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_takes_the_common_arguments_and_names_a_wrong_option(name: str, tmp_path: Path) -> None:
    options = dataset_options(name)
    assert isinstance(options, dict) and "seed" not in options and "root" not in options
    with pytest.raises(TypeError, match=rf"{name}.*'no_such_option'"):  # refused before any file is read
        build_splits(name, storage_dir=str(tmp_path), seed=0, no_such_option=1)
    with pytest.raises(KeyError) as err:
        build_splits(name + "_typo", storage_dir=str(tmp_path), seed=0)
    assert name in str(err.value)  # the unknown-name message lists every dataset


# ----------------------------------------------------------------------------- teacher choices

ARCH = "cnn1d_tiny"
EPOCHS = 40  # checkpoints at 10, 20, 30, 40: the documented examples (epoch:40, fraction:0.5, ...) exist


def _overrides(storage: Path) -> list[str]:
    """Two tiny 40-epoch teachers, scored cheaply by every estimator and every selector."""
    every_selector = "[" + ",".join(f"selected:{s}" for s in list_selectors()) + "]"  # the scorer computes them all
    return tiny_overrides(
        storage,
        **{
            "data.num_samples": 1000,
            "teacher.archs": f"[{ARCH}]",
            "teacher.epochs": EPOCHS,
            "teacher.checkpoint_every": 10,
            "student.archs": "[mlp_tiny]",
            "scoring.num_samples": 20,
            "scoring.folds": 2,
            "scoring.bootstrap": 100,
            "scoring.ensemble_sizes": "[2]",
            "scoring.degenerate_fallback": "accuracy",  # a saturated selector still resolves
            "scoring.recon.max_epochs": 2,
            "scoring.recon.patience": 1,
            "scoring.recon.seeds": 1,
            "scoring.recon.train_samples": 100,
            "scoring.estimators": "[ridge,recon,accuracy,ce_bound,kde,binning]",
            "scoring.ridge.train_samples": 100,
            "sweep.teacher_choices": every_selector,
            "scoring.proxy.epochs": 1,
            "scoring.proxy.rungs": 1,
            "scoring.proxy.bootstrap": 100,
        },
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with two finished (unscored) teacher trajectories, trained once per module."""
    storage = tmp_path_factory.mktemp("finished") / "runs"
    cfg = load_config(QUICKSTART, _overrides(storage))
    for seed in cfg.teacher.seeds:
        train_trajectory(cfg, ARCH, seed)
    return storage


@pytest.fixture(scope="module")
def scored(finished: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``finished`` scored with every estimator and every selector."""
    storage = tmp_path_factory.mktemp("scored") / "runs"
    shutil.copytree(finished, storage)
    run_scoring(load_config(QUICKSTART, _overrides(storage)))
    return storage


SEEDS = [0, 1]  # tiny_overrides' teacher seeds


def _context(storage: Path) -> ResolveContext:
    """The resolution context of a run whose teacher is seed 0 (seed 1 is its sibling)."""
    cfg = load_config(QUICKSTART, _overrides(storage))
    return ResolveContext.for_run(open_store(cfg), ARCH, cfg.data.name, SEEDS[0], SEEDS, EPOCHS)


def _resolve_like_a_run(choice: TeacherChoice, finished: Path, scored: Path) -> list[TeacherRef]:
    """Resolve against the unscored store; a choice that needs scores must say there to run `ckd
    score` first, and then resolves against the scored store. What it resolves to agrees with what
    the choice says it is: saved checkpoints of the trajectories it needs, none for no teacher,
    several for an ensemble."""
    if choice.needs_scores:
        with pytest.raises(ValueError, match=r"run `ckd score CONFIG` first"):
            resolve_teacher_choice(choice, _context(finished))
    ctx = _context(scored if choice.needs_scores else finished)
    refs = resolve_teacher_choice(choice, ctx)
    for ref in refs:
        assert ref.epoch in ctx.store.trajectory(ref.trajectory).finished_epochs(), (str(choice), ref)
    needed = choice.trajectories(ARCH, "mnist1d", SEEDS[0], SEEDS)
    assert {r.trajectory for r in refs} == set(needed), (str(choice), refs, needed)
    assert (not refs) == choice.is_none and (len(refs) > 1) == choice.is_ensemble, (str(choice), refs)
    return refs


def _kind(syntax: str) -> str:
    return syntax.partition(":")[0]


DESCRIBED = describe_teacher_choices()
PARSEABLE = [(syntax, example) for syntax, example, _ in DESCRIBED if _kind(syntax) in list_teacher_choices()]


def test_every_choice_is_described_with_syntax_example_and_help() -> None:
    assert {_kind(syntax) for syntax, _, _ in DESCRIBED} >= set(list_teacher_choices())
    for syntax, example, text in DESCRIBED:
        assert syntax and example and text and _kind(example) == _kind(syntax), (syntax, example, text)


@pytest.mark.parametrize(("syntax", "example"), PARSEABLE, ids=[s for s, _ in PARSEABLE])
def test_every_choice_example_parses_to_its_kind_and_resolves(
    syntax: str, example: str, finished: Path, scored: Path
) -> None:
    choice = parse_teacher_choice(example)
    assert choice.kind == _kind(syntax)
    _resolve_like_a_run(choice, finished, scored)


@pytest.mark.parametrize("selector", list_selectors())
def test_selected_every_selector_parses_and_resolves_once_scored(selector: str, finished: Path, scored: Path) -> None:
    choice = parse_teacher_choice(f"selected:{selector}")
    assert str(choice) == f"selected:{selector}" and choice.selector == selector and choice.needs_scores
    assert len(_resolve_like_a_run(choice, finished, scored)) == 1


# ----------------------------------------------------------------------------- MI estimators

N_TRAIN, N_SAMPLE, CLASSES = 96, 90, 3


def _signal_and_constant() -> tuple[list[CheckpointFeatures], ScoringData, TensorConvSource]:
    """Two checkpoints on a tiny sample: one whose features copy the labels (logits, penultimate)
    and the inputs (conv stage), one whose features are constant. The conv source covers the
    training rows first, then the sample's (the runner's layout)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_SAMPLE, 1, 16, generator=g)
    y = torch.arange(N_SAMPLE) % CLASSES
    onehot = F.one_hot(y, CLASSES).float()
    signal = CheckpointFeatures(1, 4.0 * onehot, onehot + 0.01 * torch.randn(N_SAMPLE, CLASSES, generator=g))
    constant = CheckpointFeatures(2, torch.zeros(N_SAMPLE, CLASSES), torch.ones(N_SAMPLE, CLASSES))
    folds = torch.arange(N_SAMPLE) % 3
    data = ScoringData(x=x[N_TRAIN:], y=y, num_classes=CLASSES, folds=folds, train_x=x[:N_TRAIN])
    return [signal, constant], data, TensorConvSource([x, torch.zeros_like(x)])


def _tiny_scoring_config() -> ScoringConfig:
    sc = ScoringConfig()
    sc.recon.max_epochs, sc.recon.patience, sc.recon.batch_size = 30, 3, 16
    sc.recon.seeds, sc.recon.train_samples = 1, N_TRAIN
    return sc


@pytest.mark.parametrize("name", list_estimators())
def test_every_estimator_is_finite_with_error_bars_and_ranks_a_copy_above_a_constant(name: str) -> None:
    est = build_estimator(name, _tiny_scoring_config())
    assert est.name == name and est.description and (est.x_key or est.y_key)
    feats, data, conv = _signal_and_constant()
    signal, constant = est.estimate(feats, data, conv if est.needs_conv else None)
    for key in (k for k in (est.x_key, est.y_key) if k is not None):
        for e in (signal, constant):
            assert math.isfinite(e.values[key]), (name, key, e.values)
            assert key in e.replicates, (name, key)  # the sample has folds: every term gets its error bar
            assert 0.0 <= standard_error(e.replicates[key]) < math.inf, (name, key, e.replicates[key])
        assert signal.values[key] > constant.values[key], (name, key, signal.values, constant.values)


# ----------------------------------------------------------------------------- normalizations


@pytest.mark.parametrize("method", list_normalizations())
def test_every_normalization_is_finite_order_preserving_and_keeps_nan(method: str) -> None:
    values = [3.0, -1.0, math.nan, 2.5, 10.0]
    out = normalize(values, method)
    assert len(out) == len(values) and math.isnan(out[2])
    kept = [(v, o) for v, o in zip(values, out) if not math.isnan(v)]
    assert all(math.isfinite(o) for _, o in kept)
    ranked = [o for _, o in sorted(kept)]
    assert ranked == sorted(ranked) and len(set(ranked)) == len(ranked), (method, out)
    assert all(math.isfinite(o) for o in normalize([5.0, 5.0, 5.0], method))  # a constant term stays finite


# ----------------------------------------------------------------------------- selectors


def test_every_selector_is_evaluated_by_the_selector_evaluation(scored: Path) -> None:
    """Students of every checkpoint of every scored trajectory (two seeds each, synthetic
    accuracies) are enough for the evaluation to judge every selector."""
    store = _context(scored).store
    rows = []
    for t in store.trajectories():
        seed = int(t.name.rsplit("-s", 1)[1])
        for epoch in t.finished_epochs():
            for student_seed in (seed, seed + 2):
                row = result_row(f"epoch:{epoch}", student_seed, seed, [(t.name, epoch)], 0.7 + epoch / 1000)
                rows.append({**row, "teacher_arch": ARCH})
    result = evaluate_selectors(rows, read_all_scores(store))
    assert not result["skipped"], result["skipped"]
    (group,) = result["groups"].values()
    judged = {r["selector"]: r for r in group["rows"]}
    assert set(list_selectors()) <= set(judged)
    for selector in list_selectors():
        assert len(judged[selector]["picks"].split("/")) == len(store.trajectories()), judged[selector]


def test_registry_listings_have_no_duplicates() -> None:
    for lister in (list_datasets, list_teacher_choices, list_estimators, list_normalizations, list_selectors):
        names = lister()
        assert names and len(set(names)) == len(names), (lister.__name__, names)
        assert all(isinstance(n, str) and n == n.strip() for n in names)
