"""What a teacher choice means, asked of ``TeacherChoice`` for every registered kind (parametrized by
the registry: a new kind is tested here without editing a list). Resolution against a store is in
``tests/test_registries.py``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness.store import CheckpointStore
from harness.teacher_choices import (
    CATEGORIES,
    TEACHER_CHOICES,
    UNKNOWN,
    ResolveContext,
    TeacherRef,
    choice_of,
    describe_teacher_choices,
    epoch_choice,
    list_teacher_choices,
    parse_teacher_choice,
    resolve_teacher_choice,
    run_trajectories,
)

EXAMPLES = {syntax.partition(":")[0]: example for syntax, example, _ in describe_teacher_choices()}
KINDS = list_teacher_choices()
SEEDS = [3, 1, 2]  # the config's teacher seeds; a run with teacher seed 1 draws on s1, then s2, s3 (wrapping)
SIBLINGS = ["a-d-s1", "a-d-s2", "a-d-s3"]


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


def test_full_ensemble_siblings_rotate_so_each_trajectory_is_in_k_ensembles() -> None:
    """Own seed, then the seeds after it in ``teacher.seeds``, wrapping: no seed is in every pair."""
    seeds = [0, 1, 2, 3, 4]
    assert run_trajectories("a", "d", 2, seeds) == ["a-d-s2", "a-d-s3", "a-d-s4", "a-d-s0", "a-d-s1"]
    assert run_trajectories("a", "d", 4, seeds) == ["a-d-s4", "a-d-s0", "a-d-s1", "a-d-s2", "a-d-s3"]
    for k in (2, 3):
        ensembles = [choice_of(f"full_ensemble:{k}").trajectories("a", "d", s, seeds) for s in seeds]
        assert all(len(set(e)) == k for e in ensembles)
        counts = Counter(t for e in ensembles for t in e)
        assert counts == {f"a-d-s{s}": k for s in seeds}, counts
    # a teacher seed outside teacher.seeds (a stored row's): its own, then the config's order
    assert run_trajectories("a", "d", 9, [0, 1, 2]) == ["a-d-s9", "a-d-s0", "a-d-s1", "a-d-s2"]


def _finished_store(root: Path, seeds: list[int], epochs: list[int]) -> CheckpointStore:
    """A store whose trajectories ``a-d-s<seed>`` are finished with checkpoints at ``epochs``."""
    store = CheckpointStore(root, "exp")
    for seed in seeds:
        traj = store.trajectory(f"a-d-s{seed}")
        traj.dir.mkdir(parents=True)
        checkpoints = [{"epoch": e, "file": f"ckpt-e{e:04d}.pt", "sha256": "0"} for e in epochs]
        traj.write_manifest({"finished": True, "checkpoints": checkpoints})
    return store


def test_full_ensemble_resolves_to_the_rotated_final_checkpoints(tmp_path: Path) -> None:
    seeds = [0, 1, 2, 3, 4]
    store = _finished_store(tmp_path, seeds, [2, 4])
    resolved = {
        s: resolve_teacher_choice("full_ensemble:2", ResolveContext.for_run(store, "a", "d", s, seeds, 4))
        for s in seeds
    }
    assert resolved[0] == [TeacherRef("a-d-s0", 4), TeacherRef("a-d-s1", 4)]
    assert resolved[4] == [TeacherRef("a-d-s4", 4), TeacherRef("a-d-s0", 4)]  # wraps around
    assert Counter(ref.trajectory for refs in resolved.values() for ref in refs) == {f"a-d-s{s}": 2 for s in seeds}
