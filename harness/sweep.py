"""The sweep's grid: teacher choice x temperature x kd_weight x student x seed, planned and run.

``sweep_runs`` lists every run of the grid, where ``every_checkpoint`` expands to ``epoch:E``
for every saved epoch and ``none`` (no teacher) is not repeated over temperatures and weights.
Single-checkpoint choices known before training to name one checkpoint (``full``, ``epoch:E``,
``fraction:F``; ``choice_aliases``) are one run, trained under one name: ``epoch:<last>`` beside
``full`` would train the same student twice (``static_aliases`` gives the report the groups).
With ``sweep.teacher_seeds=paired`` the student of the i-th seed learns from the trajectory of
``teacher.seeds[i % n]``. ``plan`` resolves each run against the store (fails early, naming the
run) and marks the runs already in the results file; ``run_sweep`` trains the rest in this
process. ``harness/cluster/sweep.py`` runs the same grid as a Ray Tune experiment.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from harness import failures, tracking
from harness.config import ConfigError, ExperimentConfig, config_hash, seed_list, to_dict
from harness.config_validation import pack_size_setting
from harness.distill import distill_pack
from harness.experiment import load_splits, open_store
from harness.models import create_model
from harness.packing import auto_pack_size, parameter_count
from harness.progress import Progress
from harness.runs import NOT_IN_RUN_ID, Run, RunResolver, teacher_seed_rule
from harness.store import CheckpointStore, trajectory_name
from harness.teacher_choices import EVERY_CHECKPOINT, choice_of
from harness.teachers import checkpoint_epochs
from harness.tracking_live import PackRuns
from harness.training import resolve_device

logger = logging.getLogger(__name__)
_ALIASES_SAID: set[tuple] = set()


@dataclass(frozen=True)
class PlannedRun:
    """A grid run, its run id and whether the results hold its row already; ``skip``: why it
    cannot train (its teacher choice does not resolve: a degenerate or failed selection, a
    missing trajectory), with no run id."""

    run: Run
    run_id: str
    done: bool
    skip: str | None = None


def saved_epochs(cfg: ExperimentConfig, teacher_arch: str) -> list[int]:
    """The saved epochs of the teacher trajectories of ``teacher_arch``: a finished trajectory's
    (its manifest), else the checkpoint schedule (the same: it is in the trajectory's hash)."""
    store = open_store(cfg)
    for seed in seed_list(cfg.teacher):
        traj = store.trajectory(trajectory_name(teacher_arch, cfg.data.name, seed))
        if traj.is_finished():
            return traj.finished_epochs()
    return checkpoint_epochs(cfg.teacher.epochs, cfg.teacher.checkpoint_every)


def choice_aliases(
    choices: Sequence[str], epochs: Sequence[int], reference: str = "full"
) -> tuple[list[str], dict[str, list[str]]]:
    """``choices`` without the aliases of one checkpoint (order kept) and ``{kept: [aliases]}``.

    Aliases are single-checkpoint choices that resolve to the same saved epoch before training
    (``full``, ``epoch:E``, ``fraction:F`` against ``epochs``, the saved epochs; the last is the
    planned total): their runs would be identical. Kept: ``reference`` if it is one of them, else
    ``full``, else the first listed. Ensembles and scored picks are never aliases."""
    unique = list(dict.fromkeys(str(c) for c in choices))
    saved = sorted(int(e) for e in epochs)
    by_epoch: dict[int, list[str]] = {}
    for choice in unique:
        epoch = choice_of(choice).static_epoch(saved, saved[-1]) if saved else None
        if epoch is not None:
            by_epoch.setdefault(epoch, []).append(choice)
    aliases: dict[str, list[str]] = {}
    for group in (g for g in by_epoch.values() if len(g) > 1):
        kept = reference if reference in group else "full" if "full" in group else group[0]
        aliases[kept] = [c for c in group if c != kept]
    dropped = {c for group in aliases.values() for c in group}
    return [c for c in unique if c not in dropped], aliases


def _expanded(cfg: ExperimentConfig, epochs: Sequence[int]) -> list[str]:
    """``sweep.teacher_choices`` with ``every_checkpoint`` as ``epoch:E`` per saved epoch (deduped)."""
    out: list[str] = []
    for choice in cfg.sweep.teacher_choices:
        out += [f"epoch:{e}" for e in epochs] if choice == EVERY_CHECKPOINT[0] else [str(choice)]
    return list(dict.fromkeys(out))


def static_aliases(cfg: ExperimentConfig, teacher_arch: str) -> dict[str, list[str]]:
    """``{kept choice: [aliases]}`` of the sweep's choices for ``teacher_arch`` (``choice_aliases``
    with ``report.reference``): the report shows ``full (= epoch:80)`` and tests the kept one only."""
    epochs = saved_epochs(cfg, teacher_arch)
    return choice_aliases(_expanded(cfg, epochs), epochs, cfg.report.reference)[1]


def expand_teacher_choices(cfg: ExperimentConfig, teacher_arch: str) -> list[str]:
    """``sweep.teacher_choices`` with ``every_checkpoint`` expanded to ``epoch:E`` per saved epoch
    (``saved_epochs``) and the aliases of one checkpoint trained once (``choice_aliases``)."""
    epochs = saved_epochs(cfg, teacher_arch)
    kept, aliases = choice_aliases(_expanded(cfg, epochs), epochs, cfg.report.reference)
    for name, dropped in aliases.items():
        if (said := (str(cfg.name), teacher_arch, name, tuple(dropped))) in _ALIASES_SAID:
            continue  # the grid is listed by every stage and the report: say it once per process
        _ALIASES_SAID.add(said)
        logger.info(
            f"[sweep] {', '.join(dropped)} {'is' if len(dropped) == 1 else 'are'} the same checkpoint as "
            f"{name}: trained once, as {name} (teacher {teacher_arch})"
        )
    return kept


def sweep_runs(cfg: ExperimentConfig) -> list[Run]:
    """Every run of the grid (stable order, no duplicates)."""
    teacher_archs = list(cfg.sweep.teacher_archs) or list(cfg.teacher.archs)
    student_archs = list(cfg.sweep.student_archs) or list(cfg.student.archs)
    runs: list[Run] = []
    seen: set[Run] = set()
    seeds = (seed_list(cfg.sweep), teacher_seed_rule(cfg))  # read once: a range stays a range
    no_teacher_seed = seeds[1](0)
    choices = {ta: expand_teacher_choices(cfg, ta) for ta in teacher_archs}
    for ta, sa in itertools.product(teacher_archs, student_archs):
        for choice in choices[ta]:
            none = choice_of(choice).is_none
            hps = (
                [(float(cfg.sweep.temperature[0]), 0.0)]
                if none
                else list(
                    itertools.product(
                        [float(t) for t in cfg.sweep.temperature], [float(w) for w in cfg.sweep.kd_weight]
                    )
                )
            )
            for (T, w), i in itertools.product(hps, range(len(seeds[0]))):
                run = Run.in_grid(cfg, ta, sa, choice, T, w, i, seeds)
                if none:  # no teacher: arch and teacher seed do not matter
                    run = dataclasses.replace(run, teacher_arch=teacher_archs[0], teacher_seed=no_teacher_seed)
                if run not in seen:
                    seen.add(run)
                    runs.append(run)
    return runs


def plan(cfg: ExperimentConfig, runs: Sequence[Run] | None = None) -> list[PlannedRun]:
    """Resolve every run against the store; a run that cannot be resolved is planned as skipped,
    with the reason (``PlannedRun.skip``), and never launched. Linear in the runs: no config
    copies, each trajectory's choices resolved once, done runs found by a set lookup."""
    runs = sweep_runs(cfg) if runs is None else runs
    resolver = RunResolver(cfg)
    done_ids = resolver.store.results.done_ids()
    out = []
    for run in runs:
        got = resolver.resolve_or_reason(run)
        if isinstance(got, str):
            out.append(PlannedRun(run, "", False, skip=got))
        else:
            out.append(PlannedRun(run, got.run_id, got.run_id in done_ids))
    return out


def record_skips(
    cfg: ExperimentConfig, planned: Sequence[PlannedRun], said: frozenset[str] = frozenset()
) -> list[PlannedRun]:
    """Record the planned runs that cannot train (``harness/failures.py``), one console line per
    reason naming its runs; clear the records of done runs and the skips of runs that resolve now
    (a failed run keeps its record until it trains); the skipped runs. ``said``: keys
    (``failures.run_key``) of skips already said (by the overlapped sweep's searcher): no line again."""
    root = open_store(cfg).root
    skipped = [p for p in planned if p.skip]
    failures.clear(root, [p.run.to_dict() for p in planned if p.done])
    failures.clear(root, [p.run.to_dict() for p in planned if not p.skip], status="skipped")  # resolves now
    by_reason: dict[str, list[str]] = {}
    for p in skipped:
        failures.record(root, p.run.to_dict(), "skipped", p.skip, stage="sweep")
        if failures.run_key(p.run.to_dict()) not in said:
            by_reason.setdefault(p.skip, []).append(failures.run_label(p.run.to_dict()))
    for reason, labels in by_reason.items():
        shown = ", ".join(labels[:3]) + (f" (+{len(labels) - 3} more)" if len(labels) > 3 else "")
        logger.warning(f"[sweep] skipped {len(labels)} run(s) before launch, {shown}: {reason}")
    return skipped


def grid_name(cfg: ExperimentConfig, runs: Sequence[Run], pins: list | None = None) -> str:
    """Tune experiment name: ``sweep.name`` or ``sweep-<hash of the grid and the recipe>``.
    ``pins`` are part of it: the run ids (they pin the resolved teacher checkpoints), or, for runs
    released before their teachers exist, the scoring config; so a grid whose teachers or scores
    changed is a new experiment, never a restore of a stale one."""
    if cfg.sweep.name:
        return str(cfg.sweep.name)
    data = {k: v for k, v in to_dict(cfg.data).items() if k not in NOT_IN_RUN_ID}
    recipe = {
        "runs": [r.to_dict() for r in runs],
        "student": to_dict(cfg.student),
        "data": data,
        "teacher": {k: v for k, v in to_dict(cfg.teacher).items() if k not in ("seeds", "pack_size")},
        "search": cfg.sweep.search,
        "scheduler": cfg.sweep.scheduler,
        "num_samples": cfg.sweep.num_samples,
        "run_ids": pins,
    }  # (the key keeps its old name: existing experiment names stay valid)
    return f"sweep-{config_hash(recipe)[:10]}"


def rows_of(store: CheckpointStore, planned: Sequence[PlannedRun]) -> list[dict]:
    """The result rows of the planned runs that have finished."""
    ids = {p.run_id for p in planned}
    return [r for r in store.read_results() if r.get("run_id") in ids]


def student_parameters(cfg: ExperimentConfig, arch: str) -> int:
    """Parameters of one student of ``arch`` on this data set (built on the meta device: no memory)."""
    splits = load_splits(cfg)
    with torch.device("meta"):
        return parameter_count(create_model(arch, num_classes=splits.num_classes, input_shape=splits.input_shape))


def pack_size(cfg: ExperimentConfig, arch: str, runs: int, slots: int, device: str = "cpu") -> int:
    """Members per pack: ``sweep.pack_size``, or for ``auto`` what the model size and device allow,
    spread over ``slots`` concurrent trials; 1 with a scheduler or a searcher (they steer single runs)."""
    size = pack_size_setting(cfg.sweep)
    if size is not None:
        return size
    if cfg.sweep.scheduler != "none" or cfg.sweep.search != "grid":
        return 1
    return auto_pack_size(student_parameters(cfg, arch), torch.device(device), runs, slots)


def pack_sizes(cfg: ExperimentConfig, runs: Sequence[Run], slots: int = 1, device: str = "cpu") -> dict[str, int]:
    """Members per pack for each student architecture of ``runs``."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.student_arch] = counts.get(run.student_arch, 0) + 1
    return {arch: pack_size(cfg, arch, n, slots, device) for arch, n in counts.items()}


def make_packs(
    cfg: ExperimentConfig, runs: Sequence[Run], slots: int = 1, device: str = "cpu", sizes: dict[str, int] | None = None
) -> list[list[Run]]:
    """``runs`` cut into packs: runs of one student architecture, in grid order, ``pack_size`` each
    (``sizes``: per architecture, when the caller computed them already, e.g. once per sweep)."""
    sizes = sizes or pack_sizes(cfg, runs, slots, device)
    by_arch: dict[str, list[Run]] = {}
    for run in runs:
        by_arch.setdefault(run.student_arch, []).append(run)
    return [group[i : i + sizes[arch]] for arch, group in by_arch.items() for i in range(0, len(group), sizes[arch])]


def run_sweep(cfg: ExperimentConfig) -> list[dict]:
    """The grid in this process, one pack after another (no Ray, no Tune); returns its rows."""
    if cfg.sweep.search != "grid":
        raise ConfigError("config key 'sweep.search': only grid runs without Ray (cluster.mode=local)")
    if cfg.sweep.scheduler != "none":
        logger.info("[sweep] note: sweep.scheduler is ignored without Ray (every run trains to the end)")
    planned = plan(cfg)
    skipped_before = record_skips(cfg, planned)
    todo = [p.run for p in planned if not p.done and not p.skip]
    sizes = pack_sizes(cfg, todo, slots=1, device=str(resolve_device(cfg.device))) if todo else {}
    packs = make_packs(cfg, todo, sizes=sizes) if todo else []
    logger.info(
        f"[sweep] {len(planned)} runs in the grid, {len(todo)} to train in this process, in {len(packs)} pack(s)"
        + (f", {len(skipped_before)} skipped" if skipped_before else "")
    )
    skipped: list[Run] = []  # runs another process is training (their lease is held): waited for at the end
    root = open_store(cfg).root
    live = PackRuns(cfg) if tracking.enabled(cfg) else None  # one W&B run per student, logged per epoch
    with Progress(len(todo), "[sweep]", "run", log=logger, final_line=True) as progress:
        for i, pack in enumerate(packs, 1):
            grid = [r.to_dict() for r in pack]
            logger.info(f"[sweep] pack {i}/{len(packs)}: {describe_pack(grid)}")
            hook = None if live is None else (lambda m, _state, k=f"pack{i}": live.epoch(k, m["runs"]))
            rows = distill_pack(cfg, pack, on_epoch=hook, wait=False)
            recorded = {e["key"] for e in failures.read_failures(root, grid)}
            failed = [j for j, r in enumerate(grid) if rows[j] is None and failures.run_key(r) in recorded]
            skipped += [r for j, (r, row) in enumerate(zip(pack, rows)) if row is None and j not in failed]
            if live is not None:
                live.close(f"pack{i}", [str(j) for j in failed], grid)
            progress.update(len(pack) - sum(row is None for row in rows))
        if skipped:
            logger.info(f"[sweep] waiting for {len(skipped)} run(s) that another process is training")
        for pack in make_packs(cfg, skipped, sizes=sizes) if skipped else []:
            distill_pack(cfg, pack)  # their row, or trained here if that process died without one
            progress.update(len(pack))
    return rows_of(open_store(cfg), planned)  # results.{jsonl,csv}: compacted by the verb (harness.pipeline)


def trial_runs(config: Mapping) -> list[dict]:
    """The run entries (``Run.to_dict``) of a Tune trial's config: ``{"runs": [...]}`` (a pack) or
    ``{"run": {...}}`` (searchers, whose entries may lack keys: ``Run.from_dict`` fills them)."""
    return list(config["runs"]) if "runs" in config else [dict(config.get("run", {}))]


def describe_pack(runs: Sequence[Mapping], limit: int = 4) -> str:
    """One line naming a pack's runs (trial config entries, the first ``limit``):
    ``mlp_small<-full T=4.0 w=0.5 s0, none s1``."""

    def one(r: Mapping) -> str:
        hp = (
            ""
            if choice_of(str(r.get("teacher_choice"))).is_none
            else f" T={r.get('temperature')} w={r.get('kd_weight')}"
        )
        return f"{r.get('teacher_choice')}{hp} s{r.get('seed')}"

    shown = ", ".join(one(r) for r in runs[:limit]) + (
        f", ... (+{len(runs) - limit} more)" if len(runs) > limit else ""
    )
    return f"{runs[0].get('student_arch')}<-{shown}"
