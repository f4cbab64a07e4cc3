"""What a teacher choice means, asked of ``TeacherChoice`` for every registered kind (parametrized by
the registry: a new kind is tested here without editing a list). Resolution against a store is in
``tests/test_registries.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.teacher_choices import (
    CATEGORIES,
    TEACHER_CHOICES,
    UNKNOWN,
    ResolveContext,
    choice_of,
    describe_teacher_choices,
    epoch_choice,
    list_teacher_choices,
    parse_teacher_choice,
    run_trajectories,
)

EXAMPLES = {syntax.partition(":")[0]: example for syntax, example, _ in describe_teacher_choices()}
KINDS = list_teacher_choices()
SEEDS = [3, 1, 2]  # the config's teacher seeds; a run with teacher seed 1 draws on s1, then s3, s2
SIBLINGS = ["a-d-s1", "a-d-s3", "a-d-s2"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_cached_parse_agrees_with_the_checked_one(kind: str) -> None:
    example = EXAMPLES[kind]
    checked, cached = parse_teacher_choice(example), choice_of(example)
    assert (cached.kind, cached.arg) == (checked.kind, checked.arg) == (kind, checked.arg)
    assert choice_of(example) is cached  # parsed once per string


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_says_what_it_means(kind: str) -> None:
    choice, meaning = choice_of(EXAMPLES[kind]), TEACHER_CHOICES.get(kind)
    assert choice.meaning is meaning
    assert choice.category is None or choice.category in CATEGORIES
    assert (choice.selector is not None) == (meaning.arg_is == "selector")
    assert (choice.epoch is not None) == (meaning.arg_is == "epoch")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_needs_its_own_trajectory_first_or_none(kind: str) -> None:
    names = choice_of(EXAMPLES[kind]).trajectories("a", "d", 1, SEEDS)
    if choice_of(EXAMPLES[kind]).is_none:
        assert names == ()
    else:
        assert names and names[0] == "a-d-s1" and list(names) == SIBLINGS[: len(names)]


def test_the_kinds_the_report_and_the_cluster_rely_on() -> None:
    assert choice_of("none").is_none and not choice_of("full").is_none
    assert choice_of("epoch:40").epoch == 40 and choice_of(epoch_choice(40)).epoch == 40
    assert choice_of("selected:paper").selector == "paper" and choice_of("selected_ensemble:2").selector is None
    assert [k for k in KINDS if choice_of(EXAMPLES[k]).needs_scores] == ["selected", "selected_ensemble"]
    assert {k for k in KINDS if choice_of(EXAMPLES[k]).is_ensemble} == {
        "snapshot",
        "full_ensemble",
        "selected_ensemble",
    }
    assert choice_of("full_ensemble:3").trajectories("a", "d", 1, SEEDS) == tuple(SIBLINGS)
    assert choice_of("full_ensemble:5").trajectories("a", "d", 1, SEEDS) == tuple(SIBLINGS)  # as many as exist
    assert choice_of("selected:paper").trajectories("a", "d", 2, SEEDS) == ("a-d-s2",)
    assert choice_of("epoch:40").category is None  # one per saved epoch: not in the ensemble comparison


def test_resolution_draws_on_the_same_trajectories_as_the_cluster() -> None:
    ctx = ResolveContext.for_run(None, "a", "d", 1, SEEDS, 40)
    assert ctx.trajectory == "a-d-s1" and ctx.siblings == SIBLINGS == run_trajectories("a", "d", 1, SEEDS)


def test_rows_from_elsewhere_keep_their_kind_and_never_raise() -> None:
    """A result row may name a selector this version lacks, a kind it does not know, or nothing."""
    assert choice_of("selected:not_a_selector").selector == "not_a_selector"
    assert choice_of("epoch:0").epoch == 0  # stricter config checks do not hide a stored row
    for text in ("?", "weird:x", ""):
        c = choice_of(text)
        assert c.meaning is UNKNOWN and not c.is_none and c.category is None and str(c) == text
    with pytest.raises(ValueError, match="unknown selector"):
        parse_teacher_choice("selected:not_a_selector")  # the config's check still asks the registry


def test_no_choice_string_is_split_outside_teacher_choices() -> None:
    """The report, the cluster's readiness check and the proxy selectors ask ``choice_of``."""
    root = Path(__file__).resolve().parents[1] / "harness"
    files = [*sorted((root / "report").glob("*.py")), root / "cluster" / "ready_runs.py", root / "scoring" / "proxy.py"]
    for path in files:
        text = path.read_text()
        assert 'split(":"' not in text and 'partition(":")' not in text, path
