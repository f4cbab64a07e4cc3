"""Structured experiment configs: dataclass schema + YAML + dotlist overrides, validated early.

Every stage reads one ``ExperimentConfig``. Loading merges the YAML file and ``key=value``
overrides onto the schema, so unknown keys and wrong types fail at once with the key named;
``validate`` then checks values (ranges, known names) before any compute is spent.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.registry import did_you_mean, known_names, parse_name, unknown_name_message


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or impossible; the message names the key."""


class StrEnum(str, Enum):
    """A closed set of config values that compares and prints as its plain string."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Schedule(StrEnum):
    cosine = "cosine"
    step = "step"
    constant = "constant"


class EnsembleReduce(StrEnum):
    probs = "probs"  # the paper's Eq. 2
    logits = "logits"  # the authors' released code


class TeacherSeeds(StrEnum):
    paired = "paired"
    first = "first"


class Scheduler(StrEnum):
    none = "none"
    asha = "asha"


class Search(StrEnum):
    grid = "grid"
    random = "random"
    optuna = "optuna"
    hyperopt = "hyperopt"


class ClusterMode(StrEnum):
    ray = "ray"
    local = "local"


class TrackingMode(StrEnum):
    disabled = "disabled"
    offline = "offline"
    online = "online"


SLUG = re.compile(r"[A-Za-z0-9._-]+")  # names that become folders under `storage`
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
PRECISIONS = ("fp32", "bf16")  # harness/precision.py (not imported here: it imports torch)
DEVICE_DATA_MODES = ("auto", "on", "off")  # data.device_data (harness/data/device_images.py)


@dataclass
class DataConfig:
    name: str = "mnist1d"
    seed: int = 0  # fixes generation and the val carving; shared by every run of an experiment
    root: str | None = None  # where CIFAR/ImageFolder files live; unused by mnist1d/digits
    download: bool = False  # only when the user asks and has network
    num_samples: int = 16000  # mnist1d generator size
    val_fraction: float = 0.1
    augment: bool = True  # paper's CIFAR augmentation; datasets without augmentation ignore it
    batch_size: int = 128
    eval_batch_size: int = 1024
    num_workers: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific, e.g. image_size
    # auto: CIFAR-shaped images live on the GPU, augmented there in batches (no loader workers); on: also on CPU; off: DataLoader
    device_data: str = "auto"


@dataclass
class OptimConfig:
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: Schedule = Schedule.cosine
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
    batch_size: int | None = None  # default: data.batch_size
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class DistillConfig:
    """One student run: which teacher checkpoint(s) teach which student, and how."""

    teacher_choice: str = "full"
    teacher_arch: str | None = None  # default: the first of teacher.archs
    teacher_seed: int | None = None  # default: the first of teacher.seeds
    student_arch: str | None = None  # default: the first of student.archs
    seed: int = 0
    temperature: float = 4.0
    kd_weight: float = 0.5  # weight of the KD term; the paper's alpha = 1 - kd_weight
    ensemble_reduce: EnsembleReduce = EnsembleReduce.probs


@dataclass
class ReconConfig:
    """The ``recon`` estimator's decoder training (harness/scoring/recon.py).

    Decoders fit on training-split rows, stop early on rows held out from those, and are
    reported on the validation scoring sample (never used for fitting or stopping)."""

    train_samples: int = 2000  # training-split rows each decoder fits and stops on, drawn per seed from train_samples x seeds (mnist1d: all 3600)
    holdout_fraction: float = 0.2  # of those rows: the early-stopping set (drawn per decoder seed)
    seeds: int = 3  # decoders per checkpoint (replicates; x scoring.folds for the error bars)
    max_epochs: int = 1000  # safety cap only: decoders stop by patience; the scores say if any hit it
    patience: int = 5  # epochs without improvement of the stopping loss before a decoder stops
    lr: float = 1e-2  # Adam
    hidden_channels: int = 12  # paper: 12
    batch_size: int = 128


@dataclass
class ProxyConfig:
    """Student-aware selection ``selected:proxy`` (harness/scoring/proxy.py): successive halving
    of short distillations from every checkpoint, picked by the proxy students' validation accuracy.

    Rung i trains the candidates left to ``epochs x reduction_factor^i`` epochs in all (the last
    rung's total is the proxy students' schedule length); after each rung the best
    1/``reduction_factor`` (rounded up) go on. ``proxy_small`` / ``proxy_large`` scale ``epochs``
    by 1/2 and 2 (selection.py's table)."""

    selectors: list[str] = field(
        default_factory=list
    )  # proxy selectors to compute (also any named by a selected:<it> choice)
    student: str | None = None  # proxy student arch; default: student.archs[0] (recipe: student.*)
    epochs: int = 2  # epochs of the first rung
    rungs: int = 3  # rungs at most (fewer when one candidate is left)
    reduction_factor: int = 2  # keep the best 1/reduction_factor after each rung; epochs grow by it
    seeds: int = 1  # proxy students per candidate (seeds seed, seed+1, ...): common to every candidate
    seed: int = 1000  # first proxy student seed: apart from the sweep's student seeds
    bootstrap: int = 1000  # resamples of the validation rows (and seeds) for the pick's confidence


@dataclass
class ScoringConfig:
    """MI scoring of teacher checkpoints (harness/scoring; selectors in scoring/selection.py)."""

    estimators: list[str] = field(default_factory=lambda: ["recon", "accuracy", "ce_bound", "kde", "binning"])
    num_samples: int = 1000  # validation samples shared by every checkpoint of a trajectory
    seed: int = 0  # draws the scoring sample and seeds the recon decoders
    batch_size: int = 500  # forward batch of the shared feature pass
    normalization: str = "minmax"  # minmax | zscore | rank | none
    x_weight: float = 1.0  # weight of normalized I(X;F) in the selection score
    y_weight: float = 1.0  # weight of normalized I(Y;F)
    ensemble_sizes: list[int] = field(default_factory=lambda: [2, 3])
    ensemble_selector: str = "paper"  # whose score ranks the selected_ensemble:K members
    min_gap_fraction: float = 0.2  # ensemble members lie at least this fraction of epochs apart
    folds: int = 5  # folds of the scoring sample: jackknife replicates, error bars (harness/scoring/replicates.py)
    bootstrap: int = 1000  # resamples of the replicates for selection_confidence (P(checkpoint is T*))
    degenerate_fallback: str | None = (
        None  # selector whose pick a degenerate selector uses; None: selected:<it> fails
    )
    kde_noise_var: float = 0.1  # relative to unit total variance of the standardized features
    kde_shuffles: int = 5  # label permutations averaged for kde's shuffled-label floor (subtracted from i_y)
    binning_bins: int = 30
    feature_cache_mb: float = 1024.0  # keep conv stages of all checkpoints in memory up to this size
    recon: ReconConfig = field(default_factory=ReconConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)


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
    teacher_seeds: TeacherSeeds = TeacherSeeds.paired
    scheduler: Scheduler = Scheduler.none  # asha early-stops trials on val_acc; stopped trials get no result row
    grace_period: int = 5  # asha: epochs every trial runs before it can be stopped
    reduction_factor: float = 3.0  # asha
    search: Search = Search.grid  # optuna / hyperopt need their package
    num_samples: int = 1  # grid: repeats of the grid; random/optuna/hyperopt: trials drawn
    max_failures: int = 2  # retries of a failed trial (FailureConfig), resumed from its checkpoint
    max_concurrent: int = 0  # 0: as resources allow
    checkpoint_every: int = 1  # epochs between trial checkpoints (metrics are reported every epoch)
    name: str | None = None  # Tune experiment name; default sweep-<hash of the grid>
    reuse_actors: bool = True  # keep trial processes alive between trials (saves start-up time)
    overlap: bool = (
        True  # `ckd run` on Ray: a student starts once its teachers (and scores) exist; false: strict stage order
    )
    trials_per_experiment: int = (
        500  # grid search: Tune experiments of at most this many runs (bounds driver memory); 0: one
    )
    pack_size: str = (
        "auto"  # students trained as one vectorized pack (one trial): N >= 1, or auto (model size, device, slots)
    )


@dataclass
class ResourcesConfig:
    cpus: float = 1.0
    gpus: float = 0.0


@dataclass
class ClusterConfig:
    """Where stages run (harness/cluster): a Ray cluster, or in this process (mode=local)."""

    mode: ClusterMode = ClusterMode.ray  # local: in this process, no Ray (machines without Ray)
    address: str | None = None  # ray://host:port, host:port or auto; also RAY_ADDRESS; none: start a local cluster
    num_cpus: int | None = None  # local cluster only; default: all cores
    num_gpus: int | None = None  # local cluster only; default: all visible GPUs
    trajectory: ResourcesConfig = field(default_factory=ResourcesConfig)  # per teacher-trajectory actor
    trial: ResourcesConfig = field(default_factory=ResourcesConfig)  # per sweep trial
    scorer: ResourcesConfig = field(default_factory=ResourcesConfig)  # per scorer actor
    scorers: int = 1  # scorer actors at most: trajectories that finish together are scored in parallel
    max_actor_restarts: int = 3  # restarts of a trajectory/scorer actor that died (-1: unlimited)
    connect_timeout_s: float = 10.0  # how long to wait for cluster.address to answer
    check_storage: bool = True  # on a multi-node cluster, check that every node sees `storage`
    progress_interval_s: float = 15.0  # how often the driver prints the trajectory progress table


@dataclass
class TrackingConfig:
    mode: TrackingMode = TrackingMode.offline
    project: str = "ckd-harness"
    entity: str | None = None


@dataclass
class ReportConfig:
    """The report's paired statistics (harness/report): what each row is compared against."""

    reference: str = "full"  # the teacher choice every leaderboard row is compared with (and `none`)
    alpha: float = 0.05  # significance level of the verdicts (on Holm-corrected p-values)


@dataclass
class ExperimentConfig:
    name: str = MISSING
    storage: str = "runs"  # checkpoint store root; <storage>/<name>/...
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (open-ended: checked by pattern)
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    restart: bool = False  # discard stored teacher state made with another config (--restart) and start over
    precision: str = "fp32"  # fp32 | bf16 (autocast for forward passes; harness/precision.py)
    channels_last: bool = False  # NHWC layout for image models and inputs
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Load YAML (optional) + ``key=value`` overrides onto the schema and validate the result."""
    try:
        layers: list[Any] = [OmegaConf.structured(ExperimentConfig)]
        if path is not None:
            layers.append(_load_yaml(Path(path)))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"override {bad[0]!r} is not of the form key=value")
        layers.append(_from_dotlist(list(overrides)))
        cfg = _merge(layers, list(overrides))
        if OmegaConf.is_missing(cfg, "name"):
            raise ConfigError(
                "config key 'name': missing; set `name: <experiment>` in the file or name=... on the command line"
            )
    except OmegaConfBaseException as e:
        raise ConfigError(_omegaconf_message(e)) from None
    validate(cfg)
    return cfg  # type: ignore[return-value]


def _merge(layers: list[Any], overrides: list[str]) -> DictConfig:
    """Merge the layers; a merge error that is not OmegaConf's own (e.g. a dict where a list
    belongs) is traced to its override and named."""
    try:
        return OmegaConf.merge(*layers)
    except OmegaConfBaseException:
        raise  # named by load_config
    except (TypeError, ValueError) as e:
        first = str(e).splitlines()[0]
        for o in overrides:
            try:
                OmegaConf.merge(layers[0], OmegaConf.from_dotlist([o]))
            except (TypeError, ValueError):
                raise ConfigError(f"config key {o.split('=', 1)[0]!r}: {first}") from None
        raise ConfigError(f"the config file does not fit the schema: {first}") from None


def _from_dotlist(overrides: list[str]) -> DictConfig:
    """``key=value`` overrides; a value YAML cannot parse is a one-line error naming its key."""
    try:
        return OmegaConf.from_dotlist(overrides)
    except yaml.YAMLError:
        for o in overrides:
            key, value = o.split("=", 1)
            try:
                yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(
                    f"config key {key!r}: the value {value!r} is not valid YAML; quote it, e.g. {key}='\"{value}\"'"
                ) from None
        raise


def _load_yaml(path: Path) -> DictConfig:
    """The YAML file as a mapping; malformed, empty or non-mapping files are one-line errors."""
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        hint = " (YAML indents with spaces, never tabs)" if "\t" in path.read_text() else ""
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}: {problem}{hint}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {e}") from None
    if data is None:
        raise ConfigError(f"config file {str(path)!r} is empty; it needs at least `name: <experiment>`")
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r}: the top level must be a mapping of keys "
            f"(name:, data:, teacher:, ...), not a {type(data).__name__}"
        )
    return OmegaConf.load(path)


def _omegaconf_message(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    first = str(e).splitlines()[0]
    bad = re.match(r"Invalid value '(.*)', expected one of \[(.*)\]", first)
    if bad:  # a closed-set (Enum) field: suggest the nearest allowed value
        first += did_you_mean(bad.group(1), [v.strip() for v in bad.group(2).split(",")])
    return f"config key {key!r}: {first}" if key else first


def to_dict(cfg: Any) -> dict:
    """Plain dict/list form (closed-set values as plain strings), e.g. for hashes and Ray."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def config_hash(obj: Any) -> str:
    """Short stable hash of a (sub)config, used to tell whether stored work matches the config."""
    data = to_dict(obj) if isinstance(obj, DictConfig) else obj
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _check(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r}: {msg}")


def _check_known(value: str, key: str, known: list[str], kind: str) -> None:
    _check(value in known, key, unknown_name_message(kind, value, known))


def is_safe_name(value: Any) -> bool:
    """One safe path component (letters, digits, ``._-``; not ``.`` or ``..``): a name that
    becomes a folder under ``storage`` can neither escape it nor be absolute."""
    return value is not None and SLUG.fullmatch(str(value)) is not None and str(value) not in (".", "..")


def _check_slug(value: Any, key: str) -> None:
    _check(
        is_safe_name(value),
        key,
        f"{value!r} is not a safe folder name: use letters, digits, '.', '_' and '-' only (no '/', not '.' or '..')",
    )


def _check_names(values: Any, key: str, kind: str, known: list[str] | None = None) -> None:
    """Every name in ``values`` is registered (``known_names(kind)``) or in ``known``."""
    known = known_names(kind) if known is None else known
    for i, value in enumerate(values):
        _check_known(value, f"{key}[{i}]", known, kind)


def validate(cfg: Any) -> None:
    """Check what the schema's types cannot: ranges, known names, consistency (before compute)."""
    _check_slug(cfg.name, "name")
    _check(cfg.threads >= 0, "threads", "must be >= 0 (0: torch's default)")
    _check(
        DEVICE_PATTERN.fullmatch(str(cfg.device)) is not None,
        "device",
        f"{cfg.device!r}: use auto, cpu, cuda, cuda:N or mps",
    )
    _check(
        cfg.precision in PRECISIONS,
        "precision",
        f"{cfg.precision!r}: use {' or '.join(PRECISIONS)}" + _suggest(str(cfg.precision), PRECISIONS),
    )
    _validate_data(cfg.data)
    _validate_teacher_student(cfg)
    _validate_distill(cfg)
    _validate_sweep(cfg)
    _validate_cluster(cfg.cluster)
    _validate_scoring(cfg.scoring)
    _validate_report(cfg.report)


def _validate_data(d: Any) -> None:
    _check_known(d.name, "data.name", known_names("dataset"), "dataset")
    _check(0.0 < d.val_fraction < 1.0, "data.val_fraction", "must lie in (0, 1)")
    _check(d.batch_size > 0, "data.batch_size", "must be positive")
    _check(d.eval_batch_size > 0, "data.eval_batch_size", f"must be positive, got {d.eval_batch_size}")
    _check(d.num_workers >= 0, "data.num_workers", "must be >= 0")
    _check(d.num_samples > 0, "data.num_samples", "must be positive")
    device_data_setting(d)


def device_data_setting(d: Any) -> str:
    """``data.device_data`` as auto | on | off (YAML reads a bare on/off as true/false: both are
    accepted); raises ConfigError for anything else."""
    text = str(d.device_data).strip().lower()
    text = {"true": "on", "false": "off"}.get(text, text)
    _check(
        text in DEVICE_DATA_MODES,
        "data.device_data",
        f"{d.device_data!r}: use auto, on or off" + _suggest(text, DEVICE_DATA_MODES),
    )
    return text


def _suggest(value: str, known: tuple[str, ...]) -> str:
    """``; did you mean 'x'?`` for the closest of ``known``, or nothing."""
    near = did_you_mean(value, list(known))
    return f";{near}" if near else ""


def _validate_optim(o: Any, prefix: str) -> None:
    _check(o.lr > 0, f"{prefix}.lr", "must be positive")
    _check(o.weight_decay >= 0, f"{prefix}.weight_decay", "must be >= 0")
    _check(0 <= o.momentum < 1, f"{prefix}.momentum", f"must lie in [0, 1), got {o.momentum}")
    _check(o.gamma > 0, f"{prefix}.gamma", "must be positive")
    _check(all(0 < m < 1 for m in o.milestones), f"{prefix}.milestones", "are fractions in (0, 1)")


def _validate_teacher_student(cfg: Any) -> None:
    t, s = cfg.teacher, cfg.student
    _check(len(t.archs) > 0, "teacher.archs", "needs at least one architecture")
    _check_names(t.archs, "teacher.archs", "model")
    _check(len(t.seeds) > 0, "teacher.seeds", "needs at least one seed")
    _check(len(set(t.seeds)) == len(t.seeds), "teacher.seeds", "has duplicates")
    _check(t.epochs > 0, "teacher.epochs", f"must be positive, got {t.epochs}")
    _check(t.checkpoint_every > 0, "teacher.checkpoint_every", "must be positive")
    _check(
        t.checkpoint_every <= t.epochs,
        "teacher.checkpoint_every",
        f"{t.checkpoint_every} is more than teacher.epochs={t.epochs}",
    )
    _check(s.epochs > 0, "student.epochs", f"must be positive, got {s.epochs}")
    _check(s.batch_size is None or s.batch_size > 0, "student.batch_size", "must be positive")
    _check(len(s.archs) > 0, "student.archs", "needs at least one architecture")
    _check_names(s.archs, "student.archs", "model")
    _validate_optim(t.optim, "teacher.optim")
    _validate_optim(s.optim, "student.optim")


def _validate_distill(cfg: Any) -> None:
    d, t = cfg.distill, cfg.teacher
    _check(d.temperature > 0, "distill.temperature", "must be positive")
    _check(0.0 <= d.kd_weight <= 1.0, "distill.kd_weight", "must lie in [0, 1]")
    if d.teacher_arch is not None:
        _check_known(d.teacher_arch, "distill.teacher_arch", list(t.archs), "teacher arch (not in teacher.archs)")
    if d.teacher_seed is not None:
        _check(
            d.teacher_seed in t.seeds,
            "distill.teacher_seed",
            f"{d.teacher_seed} is not in teacher.seeds {list(t.seeds)}",
        )
    if d.student_arch is not None:
        _check_known(d.student_arch, "distill.student_arch", known_names("model"), "model")
    _check_choice(d.teacher_choice, "distill.teacher_choice")
    for i, choice in enumerate(cfg.sweep.teacher_choices):
        if choice != "every_checkpoint":
            _check_choice(choice, f"sweep.teacher_choices[{i}]")


def _check_choice(text: str, key: str) -> None:
    """A teacher choice parses (kind and argument), through the registry."""
    try:
        parse_name("teacher choice", text)
    except ValueError as e:
        raise ConfigError(f"config key {key!r}: {e}") from None


def _validate_sweep(cfg: Any) -> None:
    s = cfg.sweep
    _check(len(s.teacher_choices) > 0, "sweep.teacher_choices", "needs at least one teacher choice (e.g. [none, full])")
    _check(
        len(s.temperature) > 0 and len(s.kd_weight) > 0, "sweep.temperature/kd_weight", "need at least one value each"
    )
    _check(all(x > 0 for x in s.temperature), "sweep.temperature", "must be positive")
    _check(all(0 <= x <= 1 for x in s.kd_weight), "sweep.kd_weight", "must lie in [0, 1]")
    _check(len(s.seeds) > 0, "sweep.seeds", "needs at least one seed")
    _check(len(set(s.seeds)) == len(s.seeds), "sweep.seeds", "has duplicates")
    _check_names(s.student_archs, "sweep.student_archs", "model")
    _check_names(s.teacher_archs, "sweep.teacher_archs", "teacher arch (not in teacher.archs)", list(cfg.teacher.archs))
    _check(s.grace_period >= 1, "sweep.grace_period", "must be >= 1")
    _check(s.reduction_factor > 1, "sweep.reduction_factor", "must be > 1")
    _check(s.num_samples >= 1, "sweep.num_samples", "must be >= 1")
    _check(s.max_failures >= -1, "sweep.max_failures", "must be >= 0 (or -1: retry forever)")
    _check(s.max_concurrent >= 0, "sweep.max_concurrent", "must be >= 0 (0: as resources allow)")
    _check(s.checkpoint_every >= 1, "sweep.checkpoint_every", "must be >= 1")
    _check(s.trials_per_experiment >= 0, "sweep.trials_per_experiment", "must be >= 0 (0: one Tune experiment)")
    _validate_pack_size(s)
    if s.name is not None:
        _check_slug(s.name, "sweep.name")


def pack_size_setting(s: Any) -> int | None:
    """``sweep.pack_size`` as an int, or None for ``auto``; raises ConfigError for anything else."""
    text = str(s.pack_size).strip()
    if text == "auto":
        return None
    _check(text.isdigit() and int(text) >= 1, "sweep.pack_size", f"must be a positive integer or auto, got {text!r}")
    return int(text)


def _validate_pack_size(s: Any) -> None:
    size = pack_size_setting(s)
    if size is None or size == 1:
        return
    _check(
        s.scheduler == "none",
        "sweep.pack_size",
        f"{size} with sweep.scheduler={s.scheduler}: the scheduler stops single trials, and a trial is a whole pack; "
        "use sweep.pack_size=1 (or auto, which is 1 with a scheduler) or sweep.scheduler=none",
    )
    _check(
        s.search == "grid",
        "sweep.pack_size",
        f"{size} with sweep.search={s.search}: a searcher proposes one run at a time; use sweep.pack_size=1 or auto",
    )


def _validate_cluster(c: Any) -> None:
    _check(c.scorers >= 1, "cluster.scorers", "must be >= 1")
    _check(c.num_cpus is None or c.num_cpus > 0, "cluster.num_cpus", "must be positive")
    _check(c.num_gpus is None or c.num_gpus >= 0, "cluster.num_gpus", "must be >= 0")
    _check(c.max_actor_restarts >= -1, "cluster.max_actor_restarts", "must be >= 0 (or -1: unlimited)")
    _check(c.connect_timeout_s > 0, "cluster.connect_timeout_s", "must be positive")
    _check(c.progress_interval_s > 0, "cluster.progress_interval_s", "must be positive")
    for r in ("trajectory", "trial", "scorer"):
        res = c[r]
        _check(res.cpus >= 0 and res.gpus >= 0, f"cluster.{r}", "resources must be >= 0")
        _check(res.cpus > 0 or res.gpus > 0, f"cluster.{r}", "needs some cpus or gpus")
        _check(
            res.gpus <= 1 or float(res.gpus).is_integer(),
            f"cluster.{r}.gpus",
            f"{res.gpus}: a fraction of one GPU (<= 1) or a whole number of GPUs",
        )


def _validate_scoring(sc: Any) -> None:
    """The ``scoring`` section: known estimators / normalization / selector, sane ranges."""
    _check(len(sc.estimators) > 0, "scoring.estimators", "needs at least one estimator")
    _check_names(sc.estimators, "scoring.estimators", "estimator")
    _check(len(set(sc.estimators)) == len(sc.estimators), "scoring.estimators", "has duplicates")
    _check(sc.num_samples > 1, "scoring.num_samples", "must be > 1")
    _check(sc.batch_size > 0, "scoring.batch_size", "must be positive")
    _check_known(sc.normalization, "scoring.normalization", known_names("normalization"), "normalization")
    _check(sc.x_weight >= 0 and sc.y_weight >= 0, "scoring.x_weight/y_weight", "must be >= 0")
    _check(sc.x_weight + sc.y_weight > 0, "scoring.x_weight/y_weight", "must not both be 0")
    _check(all(k >= 2 for k in sc.ensemble_sizes), "scoring.ensemble_sizes", "sizes must be >= 2")
    _check_known(sc.ensemble_selector, "scoring.ensemble_selector", known_names("selector"), "selector")
    _check(0.0 <= sc.min_gap_fraction < 1.0, "scoring.min_gap_fraction", "must lie in [0, 1)")
    _check(sc.folds >= 2, "scoring.folds", "must be >= 2 (the replicates behind every error bar)")
    _check(
        sc.folds <= sc.num_samples // 2,
        "scoring.folds",
        f"needs at least 2 scoring samples per fold (scoring.num_samples={sc.num_samples})",
    )
    _check(sc.bootstrap >= 100, "scoring.bootstrap", "must be >= 100 resamples")
    if sc.degenerate_fallback is not None:
        _check_known(sc.degenerate_fallback, "scoring.degenerate_fallback", known_names("selector"), "selector")
    _check(sc.kde_noise_var > 0, "scoring.kde_noise_var", "must be positive")
    _check(sc.kde_shuffles >= 1, "scoring.kde_shuffles", "must be >= 1")
    _check(sc.binning_bins >= 2, "scoring.binning_bins", "must be >= 2")
    _check(sc.feature_cache_mb >= 0, "scoring.feature_cache_mb", "must be >= 0")
    r = sc.recon
    _check(r.max_epochs > 0, "scoring.recon.max_epochs", "must be positive")
    _check(r.patience > 0, "scoring.recon.patience", "must be positive")
    _check(r.lr > 0, "scoring.recon.lr", "must be positive")
    _check(r.hidden_channels > 0, "scoring.recon.hidden_channels", "must be positive")
    _check(r.batch_size >= 2, "scoring.recon.batch_size", "must be >= 2 (BatchNorm)")
    _check(0.0 < r.holdout_fraction < 1.0, "scoring.recon.holdout_fraction", "must lie in (0, 1)")
    _check(r.train_samples >= 10, "scoring.recon.train_samples", "must be >= 10")
    _check(r.seeds >= 1, "scoring.recon.seeds", "must be >= 1")
    _validate_proxy(sc.proxy)


def _validate_proxy(p: Any) -> None:
    """The ``scoring.proxy`` section: proxy selector names, the proxy student, the rungs."""
    proxies = [n for n in known_names("selector") if n.startswith("proxy")]
    _check_names(p.selectors, "scoring.proxy.selectors", "proxy selector", proxies)
    _check(len(set(p.selectors)) == len(p.selectors), "scoring.proxy.selectors", "has duplicates")
    if p.student is not None:
        _check_known(p.student, "scoring.proxy.student", known_names("model"), "model")
    _check(p.epochs >= 1, "scoring.proxy.epochs", f"must be >= 1 (epochs of the first rung), got {p.epochs}")
    _check(1 <= p.rungs <= 20, "scoring.proxy.rungs", f"must lie in [1, 20], got {p.rungs}")
    _check(
        p.reduction_factor >= 2,
        "scoring.proxy.reduction_factor",
        f"must be >= 2 (keep 1/reduction_factor per rung), got {p.reduction_factor}",
    )
    _check(
        p.epochs * p.reduction_factor ** (p.rungs - 1) <= 10_000,
        "scoring.proxy",
        f"epochs x reduction_factor^(rungs-1) = {p.epochs * p.reduction_factor ** (p.rungs - 1)} epochs for the last rung; "
        "at most 10000",
    )
    _check(p.seeds >= 1, "scoring.proxy.seeds", f"must be >= 1, got {p.seeds}")
    _check(p.seed >= 0, "scoring.proxy.seed", "must be >= 0")
    _check(p.bootstrap >= 100, "scoring.proxy.bootstrap", "must be >= 100 resamples")


def _validate_report(r: Any) -> None:
    _check_choice(r.reference, "report.reference")
    _check(0.0 < r.alpha < 0.5, "report.alpha", "must lie in (0, 0.5)")
