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
    batch_size: Optional[int] = None  # default: data.batch_size
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
    """The ``recon`` estimator's decoder training (harness/scoring/recon.py)."""

    max_epochs: int = 60
    patience: int = 5  # epochs without held-out improvement before a decoder stops
    lr: float = 3e-3  # Adam
    hidden_channels: int = 12  # paper: 12
    batch_size: int = 32
    holdout_fraction: float = 0.25  # part of the scoring sample held out for early stopping and the reported loss
    folds: int = 1  # > 1: cross-fitting, every sample held out once (folds x the cost, less noise)


@dataclass
class ScoringConfig:
    """MI scoring of teacher checkpoints (harness/scoring; selectors in scoring/selection.py)."""

    estimators: list[str] = field(
        default_factory=lambda: ["recon", "accuracy", "ce_bound", "kde", "binning"]
    )
    num_samples: int = 1000  # validation samples shared by every checkpoint of a trajectory
    seed: int = 0  # draws the scoring sample and seeds the recon decoders
    batch_size: int = 500  # forward batch of the shared feature pass
    normalization: str = "minmax"  # minmax | zscore | rank | none
    x_weight: float = 1.0  # weight of normalized I(X;F) in the selection score
    y_weight: float = 1.0  # weight of normalized I(Y;F)
    ensemble_sizes: list[int] = field(default_factory=lambda: [2, 3])
    ensemble_selector: str = "paper"  # whose score ranks the selected_ensemble:K members
    min_gap_fraction: float = 0.2  # ensemble members lie at least this fraction of epochs apart
    kde_noise_var: float = 0.1  # relative to unit total variance of the standardized features
    binning_bins: int = 30
    feature_cache_mb: float = 1024.0  # keep conv stages of all checkpoints in memory up to this size
    recon: ReconConfig = field(default_factory=ReconConfig)


@dataclass
class SweepConfig:
    """The Ray Tune sweep (harness/cluster/sweep.py): one trial = one distilled student."""

    teacher_choices: list[str] = field(default_factory=lambda: ["none", "full", "fraction:0.5"])
    temperature: list[float] = field(default_factory=lambda: [4.0])
    kd_weight: list[float] = field(default_factory=lambda: [0.5])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # student seeds
    student_archs: list[str] = field(default_factory=list)  # empty: student.archs
    teacher_archs: list[str] = field(default_factory=list)  # empty: teacher.archs
    # paired: the student of seed i learns from the trajectory of teacher.seeds[i % n], so the
    # spread over seeds includes teacher-run noise; first: always distill.teacher_seed (or the first)
    teacher_seeds: str = "paired"
    scheduler: str = "none"  # none | asha (early-stops trials on val_acc; stopped trials get no result row)
    grace_period: int = 5  # asha: epochs every trial runs before it can be stopped
    reduction_factor: float = 3.0  # asha
    search: str = "grid"  # grid | random | optuna | hyperopt (the last two need their package)
    num_samples: int = 1  # grid: repeats of the grid; random/optuna/hyperopt: trials drawn
    max_failures: int = 2  # retries of a failed trial (FailureConfig), resumed from its checkpoint
    max_concurrent: int = 0  # 0: as resources allow
    checkpoint_every: int = 1  # epochs between trial checkpoints (metrics are reported every epoch)
    name: Optional[str] = None  # Tune experiment name; default sweep-<hash of the grid>
    reuse_actors: bool = True  # keep trial processes alive between trials (saves start-up time)


@dataclass
class ResourcesConfig:
    cpus: float = 1.0
    gpus: float = 0.0


@dataclass
class ClusterConfig:
    """Where stages run (harness/cluster): a Ray cluster, or in this process (mode=local)."""

    mode: str = "ray"  # ray | local (in-process, no Ray: for machines without Ray)
    address: Optional[str] = None  # ray://host:port, host:port or auto; also RAY_ADDRESS; none: start a local cluster
    num_cpus: Optional[int] = None  # local cluster only; default: all cores
    num_gpus: Optional[int] = None  # local cluster only; default: all visible GPUs
    trajectory: ResourcesConfig = field(default_factory=ResourcesConfig)  # per teacher-trajectory actor
    trial: ResourcesConfig = field(default_factory=ResourcesConfig)  # per sweep trial
    scorer: ResourcesConfig = field(default_factory=ResourcesConfig)  # the scorer actor
    max_actor_restarts: int = 3  # restarts of a trajectory/scorer actor that died (-1: unlimited)
    connect_timeout_s: float = 10.0  # how long to wait for cluster.address to answer
    check_storage: bool = True  # on a multi-node cluster, check that every node sees `storage`
    progress_interval_s: float = 15.0  # how often the driver prints the trajectory progress table


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
    _check(cfg.student.batch_size is None or cfg.student.batch_size > 0, "student.batch_size", "must be positive")
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
    _check_known(s.search, "sweep.search", ["grid", "hyperopt", "optuna", "random"], "search")
    _validate_sweep_cluster(cfg)
    _check_known(cfg.tracking.mode, "tracking.mode", ["disabled", "offline", "online"], "mode")
    _validate_scoring(cfg.scoring)


def _validate_scoring(sc: Any) -> None:
    """The ``scoring`` section: known estimators / normalization / selector, sane ranges."""
    from harness.scoring import list_estimators, list_normalizations, list_selectors

    _check(len(sc.estimators) > 0, "scoring.estimators", "needs at least one estimator")
    for i, name in enumerate(sc.estimators):
        _check_known(name, f"scoring.estimators[{i}]", list_estimators(), "estimator")
    _check(len(set(sc.estimators)) == len(sc.estimators), "scoring.estimators", "has duplicates")
    _check(sc.num_samples > 1, "scoring.num_samples", "must be > 1")
    _check(sc.batch_size > 0, "scoring.batch_size", "must be positive")
    _check_known(sc.normalization, "scoring.normalization", list_normalizations(), "normalization")
    _check(sc.x_weight >= 0 and sc.y_weight >= 0, "scoring.x_weight/y_weight", "must be >= 0")
    _check(sc.x_weight + sc.y_weight > 0, "scoring.x_weight/y_weight", "must not both be 0")
    _check(all(k >= 2 for k in sc.ensemble_sizes), "scoring.ensemble_sizes", "sizes must be >= 2")
    _check_known(sc.ensemble_selector, "scoring.ensemble_selector", list_selectors(), "selector")
    _check(0.0 <= sc.min_gap_fraction < 1.0, "scoring.min_gap_fraction", "must lie in [0, 1)")
    _check(sc.kde_noise_var > 0, "scoring.kde_noise_var", "must be positive")
    _check(sc.binning_bins >= 2, "scoring.binning_bins", "must be >= 2")
    _check(sc.feature_cache_mb >= 0, "scoring.feature_cache_mb", "must be >= 0")
    r = sc.recon
    _check(r.max_epochs > 0, "scoring.recon.max_epochs", "must be positive")
    _check(r.patience > 0, "scoring.recon.patience", "must be positive")
    _check(r.lr > 0, "scoring.recon.lr", "must be positive")
    _check(r.hidden_channels > 0, "scoring.recon.hidden_channels", "must be positive")
    _check(r.batch_size >= 2, "scoring.recon.batch_size", "must be >= 2 (BatchNorm)")
    _check(0.0 < r.holdout_fraction < 1.0, "scoring.recon.holdout_fraction", "must lie in (0, 1)")
    _check(r.folds >= 1, "scoring.recon.folds", "must be >= 1")


def _validate_sweep_cluster(cfg: Any) -> None:
    """The ``sweep`` and ``cluster`` sections beyond types: names, ranges, resource shapes."""
    s, c = cfg.sweep, cfg.cluster
    for i, a in enumerate(s.teacher_archs):
        _check_known(a, f"sweep.teacher_archs[{i}]", list(cfg.teacher.archs), "teacher arch (not in teacher.archs)")
    _check_known(s.teacher_seeds, "sweep.teacher_seeds", ["first", "paired"], "teacher seed policy")
    _check(len(set(s.seeds)) == len(s.seeds), "sweep.seeds", "has duplicates")
    _check(s.grace_period >= 1, "sweep.grace_period", "must be >= 1")
    _check(s.reduction_factor > 1, "sweep.reduction_factor", "must be > 1")
    _check(s.num_samples >= 1, "sweep.num_samples", "must be >= 1")
    _check(s.max_failures >= -1, "sweep.max_failures", "must be >= 0 (or -1: retry forever)")
    _check(s.max_concurrent >= 0, "sweep.max_concurrent", "must be >= 0 (0: as resources allow)")
    _check(s.checkpoint_every >= 1, "sweep.checkpoint_every", "must be >= 1")
    _check(s.name is None or (s.name.strip() != "" and "/" not in s.name), "sweep.name", "must be a folder name")
    _check_known(c.mode, "cluster.mode", ["local", "ray"], "mode")
    _check(c.num_cpus is None or c.num_cpus > 0, "cluster.num_cpus", "must be positive")
    _check(c.num_gpus is None or c.num_gpus >= 0, "cluster.num_gpus", "must be >= 0")
    _check(c.max_actor_restarts >= -1, "cluster.max_actor_restarts", "must be >= 0 (or -1: unlimited)")
    _check(c.connect_timeout_s > 0, "cluster.connect_timeout_s", "must be positive")
    _check(c.progress_interval_s > 0, "cluster.progress_interval_s", "must be positive")
    for r in ("trajectory", "trial", "scorer"):
        res = c[r]
        _check(res.cpus >= 0 and res.gpus >= 0, f"cluster.{r}", "resources must be >= 0")
        _check(res.cpus > 0 or res.gpus > 0, f"cluster.{r}", "needs some cpus or gpus")
        _check(res.gpus <= 1 or float(res.gpus).is_integer(), f"cluster.{r}.gpus",
               f"{res.gpus}: a fraction of one GPU (<= 1) or a whole number of GPUs")
