"""Typed run records: a grid point, the same run resolved against the store, its result row.

A run has three shapes on its way through the harness, each a frozen record built in one place:

* ``Run``: the grid point (teacher arch and seed, student arch, teacher choice, T, kd_weight,
  student seed). ``Run.to_dict()`` is the Tune trial config entry (``{"runs": [...]}``), so
  trial configs, experiment names and run ids stay what they were. The teacher seed a run
  leaves open is derived by ``teacher_seed_for`` alone.
* ``ResolvedRun``: the run with its teacher checkpoints (``RunResolver.resolve``), the ensemble
  reduction and its run id (a hash of the data, the student recipe and what the run learns from).
* ``ResultRow``: what a finished run records; ``to_dict()`` is the row file's object, which
  records what the run was computed from (``inputs``: its teachers' checkpoint sha256 and the data
  key), where (``environment``: ``harness/fingerprint.py``), what it ended with (``weights_sha256``)
  and ends with its ``digest`` (``harness/row_schema.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from harness.config import ExperimentConfig, config_hash, seed_list, to_dict
from harness.experiment import open_store
from harness.row_schema import DIGEST_KEY, ENVIRONMENT_KEY, INPUTS_KEY, WEIGHTS_KEY, row_digest
from harness.teacher_choices import ResolveContext, TeacherRef, parse_teacher_choice, resolve_teacher_choice

NOT_IN_RUN_ID = ("device_data",)  # how data reach the device, not what a run is (keeps stored run ids valid)
RUN_ID_KEYS = (
    "teacher_choice",
    "student_arch",
    "seed",
    "temperature",
    "kd_weight",
    "ensemble_reduce",
    "teacher_checkpoints",
)


def teacher_seed_rule(cfg: ExperimentConfig, teacher_seeds: Sequence[int] | None = None) -> Callable[[int], int]:
    """``teacher_seed_for`` with the config read once: seed index -> teacher seed (a grid's loop)."""
    seeds = seed_list(cfg.teacher) if teacher_seeds is None else teacher_seeds
    if cfg.sweep.teacher_seeds == "paired":
        n = len(seeds)
        return lambda seed_index: int(seeds[seed_index % n])
    first = int(cfg.distill.teacher_seed if cfg.distill.teacher_seed is not None else seeds[0])
    return lambda _seed_index: first


def teacher_seed_for(cfg: ExperimentConfig, seed_index: int, teacher_seeds: Sequence[int] | None = None) -> int:
    """The teacher seed of the student seed ``sweep.seeds[seed_index]`` (a single run: index 0):
    ``paired`` wraps over ``teacher.seeds``; ``first`` takes ``distill.teacher_seed`` or the first."""
    return teacher_seed_rule(cfg, teacher_seeds)(seed_index)


@dataclass(frozen=True)
class Run:
    """One grid point: a student (arch, seed) distilled from a teacher choice at T and kd_weight."""

    teacher_arch: str
    teacher_seed: int
    student_arch: str
    teacher_choice: str
    temperature: float
    kd_weight: float
    seed: int

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The trial config keys, in order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def in_grid(
        cls,
        cfg: ExperimentConfig,
        teacher_arch: str,
        student_arch: str,
        choice: str,
        temperature: float,
        kd_weight: float,
        seed_index: int,
        seeds: tuple[Sequence[int], Callable[[int], int]] | None = None,
    ) -> Run:
        """The run of student seed ``sweep.seeds[seed_index]``, its teacher seed per the policy
        (``seeds``: ``(seed_list(cfg.sweep), teacher_seed_rule(cfg))`` when a grid's loop holds them)."""
        students, teacher_seed = seeds or (seed_list(cfg.sweep), teacher_seed_rule(cfg))
        return cls(
            teacher_arch,
            teacher_seed(seed_index),
            student_arch,
            str(choice),
            float(temperature),
            float(kd_weight),
            int(students[seed_index]),
        )

    @classmethod
    def from_distill(cls, cfg: ExperimentConfig) -> Run:
        """The single run of the ``distill`` section (``ckd distill``); open names: the first of
        ``teacher.archs`` / ``student.archs``, open teacher seed: that of student seed index 0."""
        d = cfg.distill
        return cls(
            d.teacher_arch or cfg.teacher.archs[0],
            teacher_seed_for(cfg, 0) if d.teacher_seed is None else int(d.teacher_seed),
            d.student_arch or cfg.student.archs[0],
            str(d.teacher_choice),
            float(d.temperature),
            float(d.kd_weight),
            int(d.seed),
        )

    @classmethod
    def from_dict(cls, cfg: ExperimentConfig, run: Mapping[str, Any]) -> Run:
        """A trial config entry (``to_dict``'s keys; a searcher's may lack some: the ``distill``
        section's then, and the teacher seed of the student seed's place in ``sweep.seeds``)."""
        d = cfg.distill
        seed = int(run.get("seed", d.seed))
        if run.get("teacher_seed") is not None:
            teacher_seed = int(run["teacher_seed"])
        else:
            seeds = seed_list(cfg.sweep)
            teacher_seed = teacher_seed_for(cfg, seeds.index(seed) if seed in seeds else 0)
        return cls(
            run.get("teacher_arch") or d.teacher_arch or cfg.teacher.archs[0],
            teacher_seed,
            run.get("student_arch") or d.student_arch or cfg.student.archs[0],
            str(run["teacher_choice"]),
            float(run.get("temperature", d.temperature)),
            float(run.get("kd_weight", d.kd_weight)),
            seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """The Tune trial config entry (keys in ``keys()`` order)."""
        return asdict(self)


def teachers_text(refs: Sequence[TeacherRef | Mapping[str, Any]] | None) -> str:
    """A run's teacher checkpoints as ``trajectory:epoch`` joined by ``+`` (``none`` without a
    teacher), from ``TeacherRef``s or a row's ``teacher_checkpoints``: how Tune reports and W&B
    runs name them."""
    pairs = [(r["trajectory"], r["epoch"]) if isinstance(r, Mapping) else (r.trajectory, r.epoch) for r in refs or []]
    return "+".join(f"{t}:{e}" for t, e in pairs) or "none"


@dataclass(frozen=True)
class ResolvedRun:
    """A run with the teacher checkpoints its choice resolves to (none: no teacher) and its id."""

    run: Run
    teachers: tuple[TeacherRef, ...]
    ensemble_reduce: str
    run_id: str

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def temperature(self) -> float:
        return self.run.temperature

    @property
    def kd_weight(self) -> float:
        """The KD weight the student trains with: 0 without a teacher."""
        return self.run.kd_weight if self.teachers else 0.0

    @property
    def tag(self) -> str:
        return f"{self.run.student_arch}<-{self.run.teacher_choice} s{self.run.seed}"

    def fields(self) -> dict[str, Any]:
        """The run's part of its result row (and of its id): teacher arch and seed only with a teacher."""
        r = self.run
        return {
            "teacher_choice": r.teacher_choice,
            "teacher_arch": r.teacher_arch if self.teachers else None,
            "teacher_seed": r.teacher_seed if self.teachers else None,
            "teacher_checkpoints": [{"trajectory": t.trajectory, "epoch": t.epoch} for t in self.teachers],
            "student_arch": r.student_arch,
            "seed": r.seed,
            "temperature": r.temperature,
            "kd_weight": self.kd_weight,
            "ensemble_reduce": self.ensemble_reduce,
        }


class RunResolver:
    """Resolves runs of one config against the store, cheaply enough for a 10^5-run grid: the
    store and the config's static parts are built once, and each (teacher trajectory, choice)
    is resolved once (manifests and scores files are read once per trajectory, not per run)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg, self.store = cfg, open_store(cfg)
        self.static = {  # the part of every run id that does not depend on the run
            "experiment": cfg.name,
            "data": {k: v for k, v in to_dict(cfg.data).items() if k not in NOT_IN_RUN_ID},
            "student": to_dict(cfg.student),
            "teachers": {k: v for k, v in to_dict(cfg.teacher).items() if k not in ("seeds", "pack_size")},
        }
        self.dataset, self.teacher_seeds = cfg.data.name, list(seed_list(cfg.teacher))
        self._refs: dict[tuple[str, int, str], tuple[TeacherRef, ...]] = {}

    def refs(self, teacher_arch: str, teacher_seed: int, choice: str) -> tuple[TeacherRef, ...]:
        key = (teacher_arch, teacher_seed, choice)
        if key not in self._refs:
            ctx = ResolveContext.for_run(
                self.store, teacher_arch, self.dataset, teacher_seed, self.teacher_seeds, self.cfg.teacher.epochs
            )
            self._refs[key] = tuple(resolve_teacher_choice(parse_teacher_choice(choice), ctx))
        return self._refs[key]

    def resolve(self, run: Run) -> ResolvedRun:
        """``run`` with its teacher checkpoints and run id.

        The id hashes the data, the student recipe, the teacher choice, the checkpoints and the
        KD settings. The choice is part of it although e.g. ``fraction:0.5`` and ``epoch:40`` may
        resolve to the same checkpoint: each choice gets its own leaderboard row."""
        teachers = self.refs(run.teacher_arch, run.teacher_seed, run.teacher_choice)
        resolved = ResolvedRun(run, teachers, self.cfg.distill.ensemble_reduce, run_id="")
        return replace(resolved, run_id=self.run_id_of(resolved.fields()))

    def resolve_or_reason(self, run: Run) -> ResolvedRun | str:
        """``resolve(run)``, or the one-line reason it cannot train (a degenerate or failed
        selection, a missing checkpoint or trajectory): a sweep skips such a run before launch."""
        try:
            return self.resolve(run)
        except (ValueError, KeyError, OSError, RuntimeError) as e:  # StoreError is a RuntimeError
            return " ".join(str(e).split()) or type(e).__name__

    def run_id_of(self, recorded: Mapping[str, Any]) -> str:
        """The run id of a run's fields (``ResolvedRun.fields``, or a result row, which records
        them) under this config: a row whose own run id differs was not trained by this config's
        recipe (another config's run, or planted), so this config's report does not count it."""
        return config_hash({**self.static, "run": {k: recorded.get(k) for k in RUN_ID_KEYS}})

    def counted(self, rows: Sequence[dict]) -> tuple[list[dict], int]:
        """The rows this config's recipe trained (their run fields hash to their own run id,
        ``run_id_of``), and how many others: what the report and the plots count."""
        kept = [r for r in rows if self.run_id_of(r) == r["run_id"]]
        return kept, len(rows) - len(kept)


ROW_SUMMARY_KEYS = (
    "final_val_acc",
    "final_test_acc",
    "best_val_acc",
    "best_val_epoch",
    "test_acc_at_best_val",
    "val_acc_per_epoch",
    "test_acc_per_epoch",
    "wall_time_s",
    "pack_size",
    "device",
)


@dataclass(frozen=True)
class ResultRow:
    """A finished run's result: its run (``ResolvedRun.fields``), teacher metrics, final and
    best-on-validation accuracies, per-epoch curves; ``extra``: e.g. the Tune trial's identity;
    ``inputs``: the sha256 of each teacher checkpoint (``teacher_checkpoints`` order, from the
    verified manifests) and the data key; ``environment``: the fingerprint of where it trained
    (``fingerprint.environment``); ``weights_sha256``: its final weights' ``fingerprint.state_sha256``.
    ``harness/row_schema.py`` states the keys, types and ranges a stored row must have to count,
    and its ``digest``."""

    run_id: str
    experiment: str
    dataset: str
    run: Mapping[str, Any]  # ResolvedRun.fields(), as recorded
    epochs: int
    teacher_metrics: Mapping[str, float]
    final_val_acc: float
    final_test_acc: float
    best_val_acc: float
    best_val_epoch: int
    test_acc_at_best_val: float
    val_acc_per_epoch: tuple[float, ...]
    test_acc_per_epoch: tuple[float | None, ...]  # null where not evaluated (only the final and best-val epochs)
    wall_time_s: float
    pack_size: int
    device: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    weights_sha256: str | None = None

    @classmethod
    def of(
        cls,
        cfg: ExperimentConfig,
        resolved: ResolvedRun,
        teacher_metrics: Mapping[str, float],
        history: Sequence[Mapping[str, Any]],
        wall_time_s: float,
        pack_size: int,
        device: str,
        extra: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        *,
        environment: Mapping[str, Any] | None = None,
        weights_sha256: str | None = None,
    ) -> ResultRow:
        """The row of a run trained for ``history`` (one metrics dict per epoch); the best
        epoch is the one of the highest validation accuracy (ties: the earlier). ``inputs``:
        ``{"teachers": [checkpoint sha256, ...], "data": data key}``; ``environment``: where it
        trained (``fingerprint.environment``); ``weights_sha256``: ``fingerprint.state_sha256``
        of the final weights."""
        best = max(history, key=lambda m: (m["val_acc"], -m["epoch"]))
        return cls(
            resolved.run_id,
            cfg.name,
            cfg.data.name,
            resolved.fields(),
            cfg.student.epochs,
            dict(teacher_metrics),
            history[-1]["val_acc"],
            history[-1]["test_acc"],
            best["val_acc"],
            best["epoch"],
            best["test_acc"],
            tuple(m["val_acc"] for m in history),
            tuple(m.get("test_acc") for m in history),  # None: an epoch test was not evaluated on
            wall_time_s,
            pack_size,
            device,
            dict(extra or {}),
            dict(inputs or {}),
            dict(environment or {}),
            weights_sha256,
        )

    def to_dict(self) -> dict[str, Any]:
        """The row file's object (key order and values as recorded since row files exist), then
        ``inputs`` (when known), ``environment`` (when known) and ``weights_sha256`` (when known,
        or null next to an environment) and, last, the ``digest`` of all the rest (``row_digest``)."""
        summary = {k: getattr(self, k) for k in ROW_SUMMARY_KEYS}
        summary["val_acc_per_epoch"], summary["test_acc_per_epoch"] = (
            list(self.val_acc_per_epoch),
            list(self.test_acc_per_epoch),
        )
        row = {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "dataset": self.dataset,
            **self.run,
            "epochs": self.epochs,
            **self.teacher_metrics,
            **summary,
            **self.extra,
            **({INPUTS_KEY: dict(self.inputs)} if self.inputs else {}),
            **({ENVIRONMENT_KEY: dict(self.environment)} if self.environment else {}),
            **({WEIGHTS_KEY: self.weights_sha256} if self.environment or self.weights_sha256 is not None else {}),
        }
        row.pop(DIGEST_KEY, None)
        row[DIGEST_KEY] = row_digest(row)
        return row

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> ResultRow:
        """A row read back (``to_dict``'s inverse; its ``digest`` is recomputed by ``to_dict``);
        ``teacher_*`` metrics and unknown keys are kept."""
        run_keys = ("teacher_choice", "teacher_arch", "teacher_seed", "teacher_checkpoints", "student_arch", "seed")
        run_keys += ("temperature", "kd_weight", "ensemble_reduce")
        known = {"run_id", "experiment", "dataset", "epochs", *run_keys, *ROW_SUMMARY_KEYS, DIGEST_KEY}
        known |= {INPUTS_KEY, ENVIRONMENT_KEY, WEIGHTS_KEY}
        rest = {k: v for k, v in row.items() if k not in known}
        return cls(
            str(row["run_id"]),
            row.get("experiment"),
            row.get("dataset"),
            {k: row.get(k) for k in run_keys},
            row.get("epochs"),
            {k: v for k, v in rest.items() if k.startswith("teacher_")},
            **{k: row.get(k) for k in ROW_SUMMARY_KEYS if "per_epoch" not in k},
            val_acc_per_epoch=tuple(row.get("val_acc_per_epoch") or ()),
            test_acc_per_epoch=tuple(row.get("test_acc_per_epoch") or ()),
            extra={k: v for k, v in rest.items() if not k.startswith("teacher_")},
            inputs=dict(row.get(INPUTS_KEY) or {}),
            environment=dict(row.get(ENVIRONMENT_KEY) or {}),
            weights_sha256=row.get(WEIGHTS_KEY),
        )
