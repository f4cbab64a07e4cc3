"""Teacher choices: strings such as ``full`` or ``snapshot:[0.5,1.0]`` -> concrete checkpoints.

A choice is parsed early (config validation) and resolved late, against the checkpoint store,
into a list of ``TeacherRef`` (trajectory, epoch). ``none`` resolves to no teacher at all.

| choice                  | resolves to                                                    |
|-------------------------|----------------------------------------------------------------|
| none                    | no teacher: the student trains on labels alone                 |
| full                    | the last checkpoint of the teacher trajectory                  |
| epoch:E                 | the checkpoint saved at epoch E                                |
| fraction:F              | the checkpoint nearest to F x epochs (0.5 = half-way)          |
| snapshot:[a,b,...]      | several checkpoints of one trajectory; 0.5 is a fraction, 30 an epoch |
| full_ensemble:K         | the last checkpoints of K independent trajectories (seeds)     |
| selected:<selector>     | the scorer's single pick T* (run ``ckd score`` first)          |
| selected_ensemble:K     | the scorer's K-checkpoint pick from one trajectory             |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.registry import Registry, known_names, unknown_name_message


@dataclass(frozen=True)
class TeacherRef:
    trajectory: str
    epoch: int


@dataclass(frozen=True)
class TeacherChoice:
    kind: str
    arg: Any = None

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"


@dataclass
class ResolveContext:
    """What resolution needs: the store, the teacher trajectory and its siblings (other seeds)."""

    store: Any  # harness.store.CheckpointStore
    trajectory: str  # the teacher trajectory (arch, dataset, seed)
    siblings: list[str]  # trajectories of the same arch/dataset, other seeds, in seed order
    epochs: int  # planned epochs of the trajectory


@dataclass(frozen=True)
class ChoiceKind:
    parse: Callable[[str | None], Any]
    resolve: Callable[[Any, ResolveContext], list[TeacherRef]]
    syntax: str  # e.g. ``fraction:F``
    example: str  # e.g. ``fraction:0.5``
    help: str  # one line: what it resolves to


TEACHER_CHOICES: Registry[ChoiceKind] = Registry("teacher choice")


def list_teacher_choices() -> list[str]:
    return TEACHER_CHOICES.names()


# sweeps only: expands to ``epoch:E`` for every saved epoch (harness/sweep.py)
EVERY_CHECKPOINT = ("every_checkpoint", "every_checkpoint", "(sweeps only) epoch:E for every saved epoch")


def describe_teacher_choices() -> list[tuple[str, str, str]]:
    """``(syntax, example, help)`` of every choice, for ``ckd list choices``."""
    rows = [(k.syntax, k.example, k.help) for k in (TEACHER_CHOICES.get(n) for n in list_teacher_choices())]
    return rows + [EVERY_CHECKPOINT]


def parse_teacher_choice(text: str) -> TeacherChoice:
    """Parse and check a choice string; raises ValueError saying what is wrong."""
    kind, _, arg = str(text).strip().partition(":")
    if kind not in TEACHER_CHOICES:
        raise ValueError(unknown_name_message("teacher choice", str(text), list_teacher_choices()))
    try:
        parsed = TEACHER_CHOICES.get(kind).parse(arg if arg else None)
    except (TypeError, ValueError) as e:
        raise ValueError(f"teacher choice {text!r}: {e}") from None
    return TeacherChoice(kind, parsed)


def resolve_teacher_choice(choice: TeacherChoice | str, ctx: ResolveContext) -> list[TeacherRef]:
    if isinstance(choice, str):
        choice = parse_teacher_choice(choice)
    return TEACHER_CHOICES.get(choice.kind).resolve(choice.arg, ctx)


def _no_arg(arg: str | None) -> None:
    if arg is not None:
        raise ValueError("takes no argument")


def _int_arg(minimum: int) -> Callable[[str | None], int]:
    def parse(arg: str | None) -> int:
        if arg is None:
            raise ValueError("needs an integer argument")
        value = int(arg)
        if value < minimum:
            raise ValueError(f"argument must be >= {minimum}")
        return value

    return parse


def _fraction_arg(arg: str | None) -> float:
    if arg is None:
        raise ValueError("needs a fraction, e.g. fraction:0.5")
    f = float(arg)
    if not 0.0 < f <= 1.0:
        raise ValueError("fraction must lie in (0, 1]")
    return f


def _snapshot_arg(arg: str | None) -> tuple[float | int, ...]:
    if arg is None or not (arg.startswith("[") and arg.endswith("]")):
        raise ValueError("needs a list, e.g. snapshot:[0.5,1.0] (fractions) or snapshot:[30,50] (epochs)")
    items = [s.strip() for s in arg[1:-1].split(",") if s.strip()]
    if len(items) < 2:
        raise ValueError("a snapshot ensemble needs at least two members")
    out: list[float | int] = [_fraction_arg(s) if "." in s else _int_arg(1)(s) for s in items]
    return tuple(out)


def _selector_arg(arg: str | None) -> str:
    known = known_names("selector")
    if not arg:
        raise ValueError(f"needs a selector name, e.g. selected:paper; known: {', '.join(known)}")
    if arg not in known:
        raise ValueError(unknown_name_message("selector", arg, known))
    return arg


def _saved_epochs(ctx: ResolveContext, trajectory: str) -> list[int]:
    return ctx.store.trajectory(trajectory).finished_epochs()


def _at_epoch(ctx: ResolveContext, epoch: int) -> TeacherRef:
    saved = _saved_epochs(ctx, ctx.trajectory)
    if epoch not in saved:
        raise ValueError(f"trajectory {ctx.trajectory} has no checkpoint at epoch {epoch}; saved epochs: {saved}")
    return TeacherRef(ctx.trajectory, epoch)


def _nearest_fraction(ctx: ResolveContext, f: float) -> TeacherRef:
    saved = _saved_epochs(ctx, ctx.trajectory)
    target = f * ctx.epochs
    epoch = min(saved, key=lambda e: (abs(e - target), e))
    return TeacherRef(ctx.trajectory, epoch)


def _register(
    name: str,
    parse: Callable[[str | None], Any],
    resolve: Callable[[Any, ResolveContext], list[TeacherRef]],
    syntax: str,
    example: str,
    help: str,
) -> None:
    TEACHER_CHOICES.register(name)(ChoiceKind(parse, resolve, syntax, example, help))


def _resolve_full_ensemble(k: int, ctx: ResolveContext) -> list[TeacherRef]:
    if k > len(ctx.siblings):
        raise ValueError(f"full_ensemble:{k} needs {k} trajectories but teacher.seeds gives {len(ctx.siblings)}")
    return [TeacherRef(t, _saved_epochs(ctx, t)[-1]) for t in ctx.siblings[:k]]


def _resolve_selected(selector: str, ctx: ResolveContext) -> list[TeacherRef]:
    from harness.scoring.selection import read_selected

    return [TeacherRef(ctx.trajectory, read_selected(ctx.store, ctx.trajectory, selector))]


def _resolve_selected_ensemble(k: int, ctx: ResolveContext) -> list[TeacherRef]:
    from harness.scoring.selection import read_selected_ensemble

    return [TeacherRef(ctx.trajectory, e) for e in read_selected_ensemble(ctx.store, ctx.trajectory, k)]


def _resolve_snapshot(members: tuple[float | int, ...], ctx: ResolveContext) -> list[TeacherRef]:
    refs = [_nearest_fraction(ctx, m) if isinstance(m, float) else _at_epoch(ctx, m) for m in members]
    if len(set(refs)) < len(refs):
        raise ValueError(f"snapshot members {list(members)} resolve to the same checkpoint twice: {refs}")
    return refs


_register("none", _no_arg, lambda _, ctx: [], "none", "none", "no teacher: the student trains on labels alone")
_register(
    "full",
    _no_arg,
    lambda _, ctx: [TeacherRef(ctx.trajectory, _saved_epochs(ctx, ctx.trajectory)[-1])],
    "full",
    "full",
    "the last checkpoint of the teacher trajectory",
)
_register(
    "epoch", _int_arg(1), lambda e, ctx: [_at_epoch(ctx, e)], "epoch:E", "epoch:40", "the checkpoint saved at epoch E"
)
_register(
    "fraction",
    _fraction_arg,
    lambda f, ctx: [_nearest_fraction(ctx, f)],
    "fraction:F",
    "fraction:0.5",
    "the checkpoint nearest F x epochs (0.5 = half-way)",
)
_register(
    "snapshot",
    _snapshot_arg,
    _resolve_snapshot,
    "snapshot:[a,b,...]",
    "snapshot:[0.5,1.0]",
    "an ensemble of checkpoints of one run; 0.5 is a fraction, 30 an epoch",
)
_register(
    "full_ensemble",
    _int_arg(2),
    _resolve_full_ensemble,
    "full_ensemble:K",
    "full_ensemble:2",
    "the final checkpoints of K independent trajectories (seeds)",
)
_register(
    "selected",
    _selector_arg,
    _resolve_selected,
    "selected:<selector>",
    "selected:paper",
    "the scorer's pick T* (run `ckd score` first); selectors: see below",
)
_register(
    "selected_ensemble",
    _int_arg(2),
    _resolve_selected_ensemble,
    "selected_ensemble:K",
    "selected_ensemble:2",
    "the scorer's K-checkpoint pick from one trajectory",
)
