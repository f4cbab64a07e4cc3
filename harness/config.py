"""Structured experiment configs: the dataclass schema every stage reads, and its identity.

Every stage reads one ``ExperimentConfig``. ``harness.config_loading.load_config`` merges the YAML
file and ``key=value`` overrides onto this schema, so unknown keys and wrong types fail at once
with the key named; ``harness.config_validation.validate`` then checks values (ranges, known
names) before any compute is spent. Every int and float field here needs a documented range in
``harness/config_bounds.py`` (``BOUNDS``): validation walks these dataclasses and refuses a
numeric field without one. ``config_hash`` tells whether stored work matches a config.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


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


class Until(StrEnum):
    fixed = "fixed"  # the grid as given, in one round
    decided = "decided"  # rounds until every comparison of interest is decided or sweep.budget is spent


class Spending(StrEnum):
    obf = "obf"  # Lan-DeMets O'Brien-Fleming-type alpha spending: little alpha at the early looks
    pocock = "pocock"  # Lan-DeMets Pocock-type: about even alpha at every look


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
REPORTED_EPOCHS = ("final", "best_val")  # report.reported (the keys of harness/report/board.py's REPORTED)


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
    # auto: CIFAR-shaped images live on the GPU, augmented there in batches (no loader workers);
    # on: also on CPU; off: DataLoader
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
    seeds: Any = field(default_factory=lambda: [0, 1, 2])  # a list of ints or "range(a, b[, step])": seed_list
    epochs: int = 80
    checkpoint_every: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)
    # seeds of one arch trained as one vectorized pack (harness/teacher_pack.py): an int >= 1 or
    # "auto" (1 for conv models on a CPU, else a parameter budget); packs are cut from the config alone
    pack_size: str = "auto"


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

    # training-split rows each decoder fits and stops on, drawn per seed from train_samples x seeds (mnist1d: all 3600)
    train_samples: int = 2000
    holdout_fraction: float = 0.2  # of those rows: the early-stopping set (drawn per decoder seed)
    seeds: int = 3  # decoders per checkpoint (replicates; x scoring.folds for the error bars)
    max_epochs: int = 1000  # safety cap only: decoders stop by patience; the scores say if any hit it
    patience: int = 5  # epochs without improvement of the stopping loss before a decoder stops
    lr: float = 1e-2  # Adam
    hidden_channels: int = 12  # paper: 12
    batch_size: int = 128


@dataclass
class RidgeConfig:
    """The ``ridge`` estimator (harness/scoring/ridge.py): a linear decoder of the input from the
    last conv stage, fitted in closed form on training-split rows, its penalty chosen on rows held
    out from those, reported on the validation scoring sample (never used for fitting or choosing)."""

    train_samples: int = 500  # training-split rows each decoder draws from the pool (with scoring.seed): fit + held out
    holdout_fraction: float = 0.2  # of those rows: held out to choose the penalty
    # ridge penalties relative to the mean eigenvalue of the features' covariance; the best on the held-out rows wins
    penalties: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
    seeds: int = 2  # decoders per checkpoint, each on its own rows: the fit rows' noise is in the error bars


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

    estimators: list[str] = field(default_factory=lambda: ["ridge", "accuracy", "ce_bound", "kde", "binning"])
    num_samples: int = 1000  # validation samples shared by every checkpoint of a trajectory
    seed: int = 0  # draws the scoring sample, the ridge rows and seeds the recon decoders
    batch_size: int = 500  # forward batch of the shared feature pass
    normalization: str = "minmax"  # minmax | zscore | rank | none
    x_weight: float = 1.0  # weight of normalized I(X;F) in the selection score
    y_weight: float = 1.0  # weight of normalized I(Y;F)
    ensemble_sizes: list[int] = field(default_factory=lambda: [2, 3])
    ensemble_selector: str = "paper"  # whose score ranks the selected_ensemble:K members
    min_gap_fraction: float = 0.2  # ensemble members lie at least this fraction of epochs apart
    folds: int = 5  # folds of the scoring sample: jackknife replicates, error bars (harness/scoring/replicates.py)
    bootstrap: int = 1000  # resamples of the replicates for selection_confidence (P(checkpoint is T*))
    degenerate_fallback: str | None = None  # selector whose pick a degenerate selector uses; None: selected:<it> fails
    kde_noise_var: float = 0.1  # relative to unit total variance of the standardized features
    kde_shuffles: int = 5  # label permutations averaged for kde's shuffled-label floor (subtracted from i_y)
    binning_bins: int = 30
    feature_cache_mb: float = 1024.0  # keep conv stages of all checkpoints in memory up to this size
    recon: ReconConfig = field(default_factory=ReconConfig)  # only when "recon" is in estimators
    ridge: RidgeConfig = field(default_factory=RidgeConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)


@dataclass
class BudgetConfig:
    """``sweep.budget``: the compute an adaptive sweep (``sweep.until=decided``) may spend in all,
    round 0 included; unset axes are not limited: set device_hours, or both epoch axes."""

    teacher_epochs: float | None = None  # teacher epochs over all trajectories
    student_epochs: float | None = None  # student epochs over all runs
    device_hours: float | None = None  # device (CPU/GPU slot) hours of teachers and students, at the measured rates


@dataclass
class SweepConfig:
    """The Ray Tune sweep (harness/cluster/sweep.py): one trial = one distilled student."""

    teacher_choices: list[str] = field(default_factory=lambda: ["none", "full", "fraction:0.5"])
    temperature: list[float] = field(default_factory=lambda: [4.0])
    kd_weight: list[float] = field(default_factory=lambda: [0.5])
    seeds: Any = field(default_factory=lambda: [0, 1, 2])  # student seeds: a list or "range(a, b[, step])"
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
    # decided: `ckd run` works in rounds (harness/adaptive.py), adding trajectories or student seeds to what is
    # still undecided until every comparison of interest is decided or the budget is spent; fixed: one round
    until: Until = Until.fixed
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    max_rounds: int = 10  # rounds at most, round 0 (the config's own teacher.seeds x sweep.seeds) included
    spending: Spending = Spending.obf  # the alpha-spending function of the group-sequential answers
    growth: float = 1.6  # each round multiplies the information of what is undecided by this (never by the data)


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
    progress_interval_s: float = 10.0  # how often the driver prints the trajectory progress table


@dataclass
class TrackingConfig:
    mode: TrackingMode = TrackingMode.offline
    project: str = "ckd-harness"
    entity: str | None = None


@dataclass
class ReportConfig:
    """The report's paired statistics (harness/report): what each row is compared against."""

    reference: str = "full"  # the teacher choice every leaderboard row is compared with (and `none`)
    alpha: float = 0.05  # significance level of the answers (on Holm-corrected p-values)
    equivalence_margin: float = 0.5  # pp: "equivalent within ±margin" (TOST) when the difference is inside it
    reported: str = "final"  # final | best_val: the student epoch whose test accuracy the report uses
    # teacher choices compared with `reference` that an adaptive sweep decides; empty: the paper's claims
    compare: list[str] = field(default_factory=list)


@dataclass
class ExperimentConfig:
    name: str = MISSING
    storage: str = "runs"  # checkpoint store root; <storage>/<name>/...
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (open-ended: checked by pattern)
    threads: int = 0  # torch intra-op threads of every stage; 0: each stage's cluster.<stage>.cpus
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


SEED_RANGE = re.compile(r"\s*range\(\s*([+-]?\d+)\s*,\s*([+-]?\d+)\s*(?:,\s*([+-]?\d+)\s*)?\)\s*")


@functools.lru_cache(maxsize=256)
def range_parts(text: str) -> tuple[int, int, int] | None:
    """``(start, stop, step)`` of ``range(a, b[, step])`` (spaces free), or None for other text."""
    m = SEED_RANGE.fullmatch(text)
    return None if m is None else (int(m[1]), int(m[2]), int(m[3]) if m[3] is not None else 1)


def range_text(start: int, stop: int, step: int = 1) -> str:
    """The canonical form of a seed range, as ``ckd config`` prints it: ``range(0, 100000)``."""
    return f"range({start}, {stop})" if step == 1 else f"range({start}, {stop}, {step})"


@functools.lru_cache(maxsize=256)
def _seed_range(text: str) -> range:
    parts = range_parts(text)
    if parts is None or parts[2] <= 0:
        raise ConfigError(f"seeds {text!r}: not range(start, stop[, step]) with a positive step")
    return range(*parts)


def seed_list(section: Any) -> Sequence[int]:
    """The seeds of ``section`` (``cfg.teacher`` or ``cfg.sweep``, or the raw value): a ``range``
    for ``range(a, b[, step])`` (kept compact: len, index and ``in`` are O(1)), else a tuple of
    ints. The one place seeds are read; validation (``config_validation``) checks them first."""
    value = section if isinstance(section, (str, range, list, tuple, ListConfig)) else section.seeds
    if isinstance(value, str):
        return _seed_range(value)
    if isinstance(value, range):
        return value
    return tuple(int(s) for s in value)


def to_dict(cfg: Any) -> dict:
    """Plain dict/list form (closed-set values as plain strings), e.g. for hashes and Ray."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def config_hash(obj: Any) -> str:
    """Short stable hash of a (sub)config, used to tell whether stored work matches the config."""
    data = to_dict(obj) if isinstance(obj, DictConfig) else obj
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


PATH_KEYS = ("storage", "data.root", "cluster.address")  # where things are, not what the experiment is


def experiment_hash(cfg: Any) -> str:
    """The experiment's identity in the report: ``config_hash`` without the paths of
    ``PATH_KEYS``, so it stays the same when a run folder or the data moves."""
    data = to_dict(cfg)
    for key in PATH_KEYS:
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return config_hash(data)


def is_safe_name(value: Any) -> bool:
    """One safe path component (letters, digits, ``._-``; not ``.`` or ``..``): a name that
    becomes a folder under ``storage`` can neither escape it nor be absolute."""
    return value is not None and SLUG.fullmatch(str(value)) is not None and str(value) not in (".", "..")
