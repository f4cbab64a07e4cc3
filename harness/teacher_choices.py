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
| full_ensemble:K         | the last checkpoints of K trajectories: its own seed and the   |
|                         | next K - 1 of teacher.seeds, wrapping around                   |
| selected:<selector>     | the scorer's single pick T* (run ``ckd score`` first)          |
| selected_ensemble:K     | the scorer's K-checkpoint pick from one trajectory             |

Each kind is one ``ChoiceKind`` registration that also carries its meaning: a teacher or none, an
ensemble or not, resolved from the scorer's output or not, what its argument names (an epoch, a
selector), which trajectories a run needs, the one epoch it resolves to before training (``full``,
``epoch:E``, ``fraction:F``: the sweep trains aliases of one checkpoint once) and its category in
the report's plots. The sweep, the cluster's readiness check, the scorer and the report ask a
``TeacherChoice`` (``choice_of(text)``, parsed once and cached) and never split the string, so a
new kind is one registration here plus its tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from harness.registry import Registry, known_names, unknown_name_message


@dataclass(frozen=True)
class TeacherRef:
    trajectory: str
    epoch: int


@dataclass
class ResolveContext:
    """What resolution needs: the store, the teacher trajectory and its siblings (other seeds)."""

    store: Any  # harness.store.CheckpointStore
    trajectory: str  # the teacher trajectory (arch, dataset, seed)
    siblings: list[str]  # the trajectories a run may draw on: its own, then the next seeds (wrapping)
    epochs: int  # planned epochs of the trajectory

    @classmethod
    def for_run(
        cls, store: Any, arch: str, dataset: str, teacher_seed: int, teacher_seeds: Sequence[int], epochs: int
    ) -> ResolveContext:
        """The context of a run that learns from ``arch`` on ``dataset`` with ``teacher_seed``."""
        siblings = run_trajectories(arch, dataset, teacher_seed, teacher_seeds)
        return cls(store=store, trajectory=siblings[0], siblings=siblings, epochs=epochs)


def run_trajectories(arch: str, dataset: str, teacher_seed: int, teacher_seeds: Sequence[int]) -> list[str]:
    """The trajectories a run may draw on, in order: its own teacher seed, then the seeds after it
    in ``teacher_seeds``, wrapping around ([0..4], own 2 -> 2, 3, 4, 0, 1). ``full_ensemble:K`` takes
    the first K, so when every seed anchors runs each trajectory is in K of the ensembles (not the
    first seed in all of them). A seed not in ``teacher_seeds``: its own, then the config's order."""
    from harness.store import trajectory_name  # harness.store imports torch

    seeds = list(dict.fromkeys(teacher_seeds))
    if teacher_seed in seeds:
        i = seeds.index(teacher_seed)
        order = seeds[i:] + seeds[:i]
    else:
        order = [teacher_seed, *seeds]
    return [trajectory_name(arch, dataset, s) for s in order]


def _accept(arg: Any) -> None:
    """The default config-time check: the parsed argument needs no other registry."""


def _own(arg: Any, siblings: Sequence[str]) -> list[str]:
    """The default trajectories of a run: its own teacher trajectory."""
    return list(siblings[:1])


def _first_k(k: int, siblings: Sequence[str]) -> list[str]:
    """``full_ensemble:K``: the run's own trajectory and the next K - 1 seeds (wrapping)."""
    return list(siblings[:k])


# plot categories of the ensemble comparison (harness/report/plots.py), in plot order
NO_TEACHER, SINGLE, SNAPSHOT_ENSEMBLE, FULL_ENSEMBLE = (
    "no teacher",
    "single checkpoint",
    "snapshot ensemble",
    "full ensemble",
)
CATEGORIES = (NO_TEACHER, SINGLE, SNAPSHOT_ENSEMBLE, FULL_ENSEMBLE)


@dataclass(frozen=True)
class ChoiceKind:
    """One registered kind: its syntax, how it resolves, and what it means to the sweep, the
    cluster's readiness check and the report (which ask ``TeacherChoice``, never the string)."""

    parse: Callable[[str | None], Any]  # the argument's syntax; raises ValueError
    resolve: Callable[[Any, ResolveContext], list[TeacherRef]]
    syntax: str  # e.g. ``fraction:F``
    example: str  # e.g. ``fraction:0.5``
    help: str  # one line: what it resolves to
    check: Callable[[Any], None] = _accept  # config-time check against other registries (selector names)
    needs: Callable[[Any, Sequence[str]], list[str]] = _own  # the sibling trajectories a run needs
    teacher: bool = True  # False: the student learns from labels alone
    ensemble: bool = False  # resolves to several checkpoints
    scored: bool = False  # resolves from the scorer's output (``ckd score`` first)
    arg_is: str | None = None  # what the argument names: "epoch" or "selector"
    # the one epoch it resolves to from (arg, saved epochs, planned epochs) alone; None: not static
    static: Callable[[Any, Sequence[int], int], int | None] | None = None
    category: str | None = None  # of ``CATEGORIES``; None: not in the ensemble comparison


TEACHER_CHOICES: Registry[ChoiceKind] = Registry("teacher choice")
# what an unregistered kind (a row from another version) means: a single teacher, nothing more
UNKNOWN = ChoiceKind(parse=lambda arg: arg, resolve=lambda arg, ctx: [], syntax="", example="", help="")


@dataclass(frozen=True)
class TeacherChoice:
    """A parsed choice; ``text`` is its spelling (as the result rows and the report show it)."""

    kind: str
    arg: Any = None
    text: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"

    @property
    def meaning(self) -> ChoiceKind:
        """The registered kind (``UNKNOWN`` for a kind this version does not know)."""
        return TEACHER_CHOICES.get(self.kind) if self.kind in TEACHER_CHOICES else UNKNOWN

    @property
    def is_none(self) -> bool:
        """No teacher: the student learns from labels alone."""
        return not self.meaning.teacher

    @property
    def is_ensemble(self) -> bool:
        return self.meaning.ensemble

    @property
    def needs_scores(self) -> bool:
        """Resolved from the scorer's output (``selected``, ``selected_ensemble``)."""
        return self.meaning.scored

    @property
    def selector(self) -> str | None:
        """The selector a ``selected:<selector>`` choice names, else None."""
        return None if self.meaning.arg_is != "selector" or self.arg is None else str(self.arg)

    @property
    def epoch(self) -> int | None:
        """The teacher epoch an ``epoch:E`` choice names, else None."""
        return None if self.meaning.arg_is != "epoch" or self.arg is None else int(self.arg)

    def static_epoch(self, saved: Sequence[int], epochs: int) -> int | None:
        """The one checkpoint epoch this choice resolves to from the saved epochs and the planned
        epochs alone, as the resolver would (``full``, ``epoch:E``, ``fraction:F``); None otherwise."""
        static = self.meaning.static
        return None if static is None or not saved else static(self.arg, list(saved), int(epochs))

    @property
    def category(self) -> str | None:
        """Its category in the report's ensemble comparison (``CATEGORIES``), None if left out."""
        return self.meaning.category

    def trajectories(self, arch: str, dataset: str, teacher_seed: int, teacher_seeds: Sequence[int]) -> tuple[str, ...]:
        """The teacher trajectories a run with this choice needs (() for ``none``)."""
        if self.is_none:
            return ()
        return tuple(self.meaning.needs(self.arg, run_trajectories(arch, dataset, teacher_seed, teacher_seeds)))


def list_teacher_choices() -> list[str]:
    return TEACHER_CHOICES.names()


# sweeps only: expands to ``epoch:E`` for every saved epoch (harness/sweep.py)
EVERY_CHECKPOINT = (
    "every_checkpoint",
    "every_checkpoint",
    "(sweeps only) epoch:E for every saved epoch (the last is full's run: trained once, as full)",
)


def describe_teacher_choices() -> list[tuple[str, str, str]]:
    """``(syntax, example, help)`` of every choice, for ``ckd list choices``."""
    rows = [(k.syntax, k.example, k.help) for k in (TEACHER_CHOICES.get(n) for n in list_teacher_choices())]
    return rows + [EVERY_CHECKPOINT]


def parse_teacher_choice(text: str) -> TeacherChoice:
    """Parse and check a choice string; raises ValueError saying what is wrong."""
    spelled = str(text).strip()
    kind, _, arg = spelled.partition(":")
    if kind not in TEACHER_CHOICES:
        raise ValueError(unknown_name_message("teacher choice", str(text), list_teacher_choices()))
    meaning = TEACHER_CHOICES.get(kind)
    try:
        parsed = meaning.parse(arg if arg else None)
        meaning.check(parsed)
    except (TypeError, ValueError) as e:
        raise ValueError(f"teacher choice {text!r}: {e}") from None
    return TeacherChoice(kind, parsed, spelled)


@lru_cache(maxsize=4096)
def choice_of(text: str) -> TeacherChoice:
    """The choice a stored string names, parsed once (cached: the report asks per row). Never
    raises and asks no other registry: a row from another version or naming a selector this one
    lacks keeps its kind, with the argument as written when it does not parse."""
    spelled = str(text)
    kind, _, arg = spelled.partition(":")
    try:
        parsed = (TEACHER_CHOICES.get(kind) if kind in TEACHER_CHOICES else UNKNOWN).parse(arg if arg else None)
    except (TypeError, ValueError):
        parsed = arg if arg else None
    return TeacherChoice(kind, parsed, spelled)


def epoch_choice(epoch: int) -> str:
    """The spelling of the choice of the checkpoint at ``epoch`` (``epoch:E``)."""
    return f"epoch:{int(epoch)}"


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
    return arg or ""  # its name is checked against the selectors by ``_known_selector`` (config time)


def _known_selector(name: str) -> None:
    known = known_names("selector")
    if not name:
        raise ValueError(f"needs a selector name, e.g. selected:paper; known: {', '.join(known)}")
    if name not in known:
        raise ValueError(unknown_name_message("selector", name, known))


def _saved_epochs(ctx: ResolveContext, trajectory: str) -> list[int]:
    return ctx.store.trajectory(trajectory).finished_epochs()


def _at_epoch(ctx: ResolveContext, epoch: int) -> TeacherRef:
    saved = _saved_epochs(ctx, ctx.trajectory)
    if epoch not in saved:
        raise ValueError(f"trajectory {ctx.trajectory} has no checkpoint at epoch {epoch}; saved epochs: {saved}")
    return TeacherRef(ctx.trajectory, epoch)


def _nearest(f: float, saved: Sequence[int], epochs: int) -> int:
    """The saved epoch nearest ``f`` x ``epochs`` (the earlier on ties)."""
    return min(saved, key=lambda e: (abs(e - f * epochs), e))


def _nearest_fraction(ctx: ResolveContext, f: float) -> TeacherRef:
    return TeacherRef(ctx.trajectory, _nearest(f, _saved_epochs(ctx, ctx.trajectory), ctx.epochs))


def _register(name: str, kind: ChoiceKind) -> None:
    TEACHER_CHOICES.register(name)(kind)


def _resolve_full_ensemble(k: int, ctx: ResolveContext) -> list[TeacherRef]:
    if k > len(ctx.siblings):
        raise ValueError(f"full_ensemble:{k} needs {k} trajectories but teacher.seeds gives {len(ctx.siblings)}")
    return [TeacherRef(t, _saved_epochs(ctx, t)[-1]) for t in _first_k(k, ctx.siblings)]


def _resolve_selected(selector: str, ctx: ResolveContext) -> list[TeacherRef]:
    from harness.scoring.teacher_picks import read_selected

    return [TeacherRef(ctx.trajectory, read_selected(ctx.store, ctx.trajectory, selector))]


def _resolve_selected_ensemble(k: int, ctx: ResolveContext) -> list[TeacherRef]:
    from harness.scoring.teacher_picks import read_selected_ensemble

    return [TeacherRef(ctx.trajectory, e) for e in read_selected_ensemble(ctx.store, ctx.trajectory, k)]


def _resolve_snapshot(members: tuple[float | int, ...], ctx: ResolveContext) -> list[TeacherRef]:
    refs = [_nearest_fraction(ctx, m) if isinstance(m, float) else _at_epoch(ctx, m) for m in members]
    if len(set(refs)) < len(refs):
        raise ValueError(f"snapshot members {list(members)} resolve to the same checkpoint twice: {refs}")
    return refs


_register(
    "none",
    ChoiceKind(
        _no_arg,
        lambda _, ctx: [],
        "none",
        "none",
        "no teacher: the student trains on labels alone",
        needs=lambda _, siblings: [],
        teacher=False,
        category=NO_TEACHER,
    ),
)
_register(
    "full",
    ChoiceKind(
        _no_arg,
        lambda _, ctx: [TeacherRef(ctx.trajectory, _saved_epochs(ctx, ctx.trajectory)[-1])],
        "full",
        "full",
        "the last checkpoint of the teacher trajectory",
        static=lambda _, saved, epochs: saved[-1],
        category=SINGLE,
    ),
)
_register(
    "epoch",
    ChoiceKind(
        _int_arg(1),
        lambda e, ctx: [_at_epoch(ctx, e)],
        "epoch:E",
        "epoch:40",
        "the checkpoint saved at epoch E",
        static=lambda e, saved, epochs: e if e in saved else None,
        arg_is="epoch",  # one per saved epoch in a sweep: too many for the ensemble comparison
    ),
)
_register(
    "fraction",
    ChoiceKind(
        _fraction_arg,
        lambda f, ctx: [_nearest_fraction(ctx, f)],
        "fraction:F",
        "fraction:0.5",
        "the checkpoint nearest F x epochs (0.5 = half-way)",
        static=_nearest,
        category=SINGLE,
    ),
)
_register(
    "snapshot",
    ChoiceKind(
        _snapshot_arg,
        _resolve_snapshot,
        "snapshot:[a,b,...]",
        "snapshot:[0.5,1.0]",
        "an ensemble of checkpoints of one run; 0.5 is a fraction, 30 an epoch",
        ensemble=True,
        category=SNAPSHOT_ENSEMBLE,
    ),
)
_register(
    "full_ensemble",
    ChoiceKind(
        _int_arg(2),
        _resolve_full_ensemble,
        "full_ensemble:K",
        "full_ensemble:2",
        "the final checkpoints of K trajectories: its own seed, then the next ones (wrapping)",
        needs=_first_k,
        ensemble=True,
        category=FULL_ENSEMBLE,
    ),
)
_register(
    "selected",
    ChoiceKind(
        _selector_arg,
        _resolve_selected,
        "selected:<selector>",
        "selected:paper",
        "the scorer's pick T* (run `ckd score` first); selectors: see below",
        check=_known_selector,
        scored=True,
        arg_is="selector",
        category=SINGLE,
    ),
)
_register(
    "selected_ensemble",
    ChoiceKind(
        _int_arg(2),
        _resolve_selected_ensemble,
        "selected_ensemble:K",
        "selected_ensemble:2",
        "the scorer's K-checkpoint pick from one trajectory",
        ensemble=True,
        scored=True,
        category=SNAPSHOT_ENSEMBLE,
    ),
)
