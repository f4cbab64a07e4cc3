"""Structured experiment configs: dataclass schema + YAML + dotlist overrides, validated early.

Every stage reads one ``ExperimentConfig``. Loading merges the YAML file and ``key=value``
overrides onto the schema, so unknown keys and wrong types fail at once with the key named;
``validate`` then checks values (ranges, known names) before any compute is spent.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or impossible; the message names the key."""


@dataclass
class DataConfig:
    name: str = "mnist1d"
    seed: int = 0  # fixes generation and the val carving; shared by every run of an experiment
    root: Optional[str] = None  # where CIFAR/ImageFolder files live; unused by mnist1d/digits
    download: bool = False  # only when the user asks and has network
    num_samples: int = 16000  # mnist1d generator size
    val_fraction: float = 0.1
    augment: bool = True  # paper's CIFAR augmentation; datasets without augmentation ignore it
    batch_size: int = 128
    eval_batch_size: int = 1024
    num_workers: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific, e.g. image_size


@dataclass
class OptimConfig:
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step | constant
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of epochs
    gamma: float = 0.1


@dataclass
class TeacherConfig:
    archs: list[str] = field(default_factory=lambda: ["cnn1d_small"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 80
    checkpoint_every: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class StudentConfig:
    archs: list[str] = field(default_factory=lambda: ["mlp_small"])
    epochs: int = 30
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class DistillConfig:
    """One student run: which teacher checkpoint(s) teach which student, and how."""

    teacher_choice: str = "full"
    teacher_arch: Optional[str] = None  # default: the first of teacher.archs
    teacher_seed: Optional[int] = None  # default: the first of teacher.seeds
    student_arch: Optional[str] = None  # default: the first of student.archs
    seed: int = 0
    temperature: float = 4.0
    kd_weight: float = 0.5  # weight of the KD term; the paper's alpha = 1 - kd_weight
    ensemble_reduce: str = "probs"  # probs (paper Eq. 2) | logits (authors' code)


@dataclass
class ReconConfig:
    max_epochs: int = 30
    patience: int = 3
    lr: float = 1e-3
    hidden_channels: int = 12


@dataclass
class ScoringConfig:
    estimators: list[str] = field(
        default_factory=lambda: ["recon", "accuracy", "ce_bound", "kde", "binning"]
    )
    num_samples: int = 1000  # validation samples shared by every checkpoint of a trajectory
    seed: int = 0
    batch_size: int = 500
    normalization: str = "minmax"
    x_weight: float = 1.0  # weight of normalized I(X;F) in the selection score
    y_weight: float = 1.0  # weight of normalized I(Y;F)
    ensemble_sizes: list[int] = field(default_factory=lambda: [2, 3])
    min_gap_fraction: float = 0.2  # ensemble members lie at least this fraction of epochs apart
    kde_noise_var: float = 0.1
    binning_bins: int = 30
    recon: ReconConfig = field(default_factory=ReconConfig)


@dataclass
class SweepConfig:
    teacher_choices: list[str] = field(default_factory=lambda: ["none", "full", "fraction:0.5"])
    temperature: list[float] = field(default_factory=lambda: [4.0])
    kd_weight: list[float] = field(default_factory=lambda: [0.5])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    student_archs: list[str] = field(default_factory=list)  # empty: student.archs
    scheduler: str = "none"  # none | asha
    search: str = "grid"  # grid | random
    num_samples: int = 1  # samples per grid point (random search draws)
    max_failures: int = 2
    max_concurrent: int = 0  # 0: as resources allow


@dataclass
class ResourcesConfig:
    cpus: float = 1.0
    gpus: float = 0.0


@dataclass
class ClusterConfig:
    address: Optional[str] = None  # ray://... or host:port; also RAY_ADDRESS
    num_cpus: Optional[int] = None  # local cluster only; default: all cores
    num_gpus: Optional[int] = None
    trajectory: ResourcesConfig = field(default_factory=ResourcesConfig)
    trial: ResourcesConfig = field(default_factory=ResourcesConfig)
    scorer: ResourcesConfig = field(default_factory=ResourcesConfig)
    max_actor_restarts: int = 3


@dataclass
class TrackingConfig:
    mode: str = "offline"  # disabled | offline | online
    project: str = "ckd-harness"
    entity: Optional[str] = None


@dataclass
class ExperimentConfig:
    name: str = MISSING
    storage: str = "runs"  # checkpoint store root; <storage>/<name>/...
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Load YAML (optional) + ``key=value`` overrides onto the schema and validate the result."""
    schema = OmegaConf.structured(ExperimentConfig)
    try:
        layers: list[Any] = [schema]
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file {str(path)!r} does not exist")
            layers.append(OmegaConf.load(path))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"override {bad[0]!r} is not of the form key=value")
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        cfg = OmegaConf.merge(*layers)
    except OmegaConfBaseException as e:
        raise ConfigError(_omegaconf_message(e)) from None
    validate(cfg)
    return cfg  # type: ignore[return-value]


def _omegaconf_message(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    first = str(e).splitlines()[0]
    return f"config key {key!r}: {first}" if key else first


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def config_hash(obj: Any) -> str:
    """Short stable hash of a (sub)config, used to tell whether stored work matches the config."""
    data = to_dict(obj) if isinstance(obj, DictConfig) else obj
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _check(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r}: {msg}")


def _check_known(value: str, key: str, known: list[str], kind: str) -> None:
    _check(value in known, key, f"unknown {kind} {value!r}; known: {', '.join(known)}")


def validate(cfg: Any) -> None:
    """Check values that the schema's types cannot: ranges, known names, consistency."""
    from harness.data import list_datasets
    from harness.models import list_models
    from harness.teacher_choices import parse_teacher_choice

    _check(cfg.name not in ("", None), "name", "must be a non-empty experiment name")
    _check_known(cfg.data.name, "data.name", list_datasets(), "dataset")
    _check(0.0 < cfg.data.val_fraction < 1.0, "data.val_fraction", "must lie in (0, 1)")
    _check(cfg.data.batch_size > 0, "data.batch_size", "must be positive")
    _check(cfg.data.num_samples > 0, "data.num_samples", "must be positive")
    t = cfg.teacher
    _check(len(t.archs) > 0, "teacher.archs", "needs at least one architecture")
    for i, a in enumerate(t.archs):
        _check_known(a, f"teacher.archs[{i}]", list_models(), "model")
    _check(len(t.seeds) > 0, "teacher.seeds", "needs at least one seed")
    _check(len(set(t.seeds)) == len(t.seeds), "teacher.seeds", "has duplicates")
    _check(t.epochs > 0, "teacher.epochs", f"must be positive, got {t.epochs}")
    _check(t.checkpoint_every > 0, "teacher.checkpoint_every", "must be positive")
    _check(
        t.checkpoint_every <= t.epochs,
        "teacher.checkpoint_every",
        f"{t.checkpoint_every} is more than teacher.epochs={t.epochs}",
    )
    _check(cfg.student.epochs > 0, "student.epochs", f"must be positive, got {cfg.student.epochs}")
    for i, a in enumerate(cfg.student.archs):
        _check_known(a, f"student.archs[{i}]", list_models(), "model")
    for i, a in enumerate(cfg.sweep.student_archs):
        _check_known(a, f"sweep.student_archs[{i}]", list_models(), "model")
    for prefix, o in (("teacher.optim", t.optim), ("student.optim", cfg.student.optim)):
        _check(o.lr > 0, f"{prefix}.lr", "must be positive")
        _check(o.weight_decay >= 0, f"{prefix}.weight_decay", "must be >= 0")
        _check_known(o.schedule, f"{prefix}.schedule", ["constant", "cosine", "step"], "schedule")
        _check(all(0 < m < 1 for m in o.milestones), f"{prefix}.milestones", "are fractions in (0, 1)")
    d = cfg.distill
    _check(d.temperature > 0, "distill.temperature", "must be positive")
    _check(0.0 <= d.kd_weight <= 1.0, "distill.kd_weight", "must lie in [0, 1]")
    _check_known(d.ensemble_reduce, "distill.ensemble_reduce", ["logits", "probs"], "reduce")
    if d.teacher_arch is not None:
        _check_known(d.teacher_arch, "distill.teacher_arch", list(t.archs), "teacher arch (not in teacher.archs)")
    if d.teacher_seed is not None:
        _check(d.teacher_seed in t.seeds, "distill.teacher_seed", f"{d.teacher_seed} is not in teacher.seeds {list(t.seeds)}")
    if d.student_arch is not None:
        _check_known(d.student_arch, "distill.student_arch", list_models(), "model")
    try:
        parse_teacher_choice(d.teacher_choice)
        for c in cfg.sweep.teacher_choices:
            if c != "every_checkpoint":
                parse_teacher_choice(c)
    except ValueError as e:
        raise ConfigError(f"config key 'distill.teacher_choice' / 'sweep.teacher_choices': {e}") from None
    s = cfg.sweep
    _check(all(x > 0 for x in s.temperature), "sweep.temperature", "must be positive")
    _check(all(0 <= x <= 1 for x in s.kd_weight), "sweep.kd_weight", "must lie in [0, 1]")
    _check(len(s.seeds) > 0, "sweep.seeds", "needs at least one seed")
    _check_known(s.scheduler, "sweep.scheduler", ["asha", "none"], "scheduler")
    _check_known(s.search, "sweep.search", ["grid", "random"], "search")
    _check_known(cfg.tracking.mode, "tracking.mode", ["disabled", "offline", "online"], "mode")
    sc = cfg.scoring
    _check(sc.num_samples > 1, "scoring.num_samples", "must be > 1")
    _check(all(k >= 2 for k in sc.ensemble_sizes), "scoring.ensemble_sizes", "sizes must be >= 2")
    for r in ("trajectory", "trial", "scorer"):
        res = cfg.cluster[r]
        _check(res.cpus >= 0 and res.gpus >= 0, f"cluster.{r}", "resources must be >= 0")
