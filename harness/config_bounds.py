"""Bounds of every number in the config: each int and float field of the schema (``harness/config.py``),
and each element of its number lists, must be finite and lie in a documented range before compute.

``BOUNDS`` is the documentation: one ``Range`` per numeric field, keyed ``<Dataclass>.<field>`` (so
``OptimConfig.lr`` bounds ``teacher.optim.lr`` and ``student.optim.lr``). ``check_bounds`` walks the
schema's dataclasses, not a list of keys, so a numeric field added without a bound fails every
validation at once (a developer error, not a user's). Thread counts have a fixed cap
(``MAX_THREADS``), not one derived from this machine's cores: a config valid on one node is valid
on all of them. The wider, value-specific checks (``checkpoint_every <= epochs``, ...) stay in
``harness/config_validation.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from typing import Any

from harness.config import ConfigError, ExperimentConfig

MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_THREADS = 1024  # fixed cap (torch intra-op threads); 100000 made libgomp run out of memory
MAX_WORKERS = 256  # DataLoader worker processes
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_SAMPLES = 10_000_000
MAX_LIST = 1000  # values in one list (seeds, temperatures, ...): bounds the grid and its planning
MAX_PACK = 512  # sweep.pack_size and teacher.pack_size: members trained as one vectorized pack


@dataclass(frozen=True)
class Range:
    """A closed or half-open interval; ``describe`` says it as ``(0, 10]``."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, x: float) -> bool:
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return _finite(x) and above and below

    def describe(self) -> str:
        def num(v: float) -> str:
            return str(int(v)) if float(v).is_integer() else str(v)

        return f"{'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"


def _open(lo: float, hi: float) -> Range:
    return Range(lo, hi, True, True)


def _lo_open(lo: float, hi: float) -> Range:
    return Range(lo, hi, lo_open=True)


def _hi_open(lo: float, hi: float) -> Range:
    return Range(lo, hi, hi_open=True)


SEED = Range(0, MAX_SEED)
LR = _lo_open(0, 10)
TEMPERATURE = _lo_open(0, 100)
WEIGHT = Range(0, 1)  # kd_weight: the share of the KD term
FRACTION = _open(0, 1)
SECONDS = _lo_open(0, 86_400)

BOUNDS: dict[str, Range] = {
    "ExperimentConfig.threads": Range(0, MAX_THREADS),
    "DataConfig.seed": SEED,
    "DataConfig.num_samples": Range(1, MAX_SAMPLES),
    "DataConfig.val_fraction": FRACTION,
    "DataConfig.batch_size": Range(1, MAX_BATCH),
    "DataConfig.eval_batch_size": Range(1, MAX_BATCH),
    "DataConfig.num_workers": Range(0, MAX_WORKERS),
    "OptimConfig.lr": LR,
    "OptimConfig.momentum": _hi_open(0, 1),
    "OptimConfig.weight_decay": Range(0, 1),
    "OptimConfig.milestones": FRACTION,
    "OptimConfig.gamma": _lo_open(0, 1),
    "TeacherConfig.seeds": SEED,
    "TeacherConfig.epochs": Range(1, MAX_EPOCHS),
    "TeacherConfig.checkpoint_every": Range(1, MAX_EPOCHS),
    "StudentConfig.epochs": Range(1, MAX_EPOCHS),
    "StudentConfig.batch_size": Range(1, MAX_BATCH),
    "DistillConfig.teacher_seed": SEED,
    "DistillConfig.seed": SEED,
    "DistillConfig.temperature": TEMPERATURE,
    "DistillConfig.kd_weight": WEIGHT,
    "ReconConfig.train_samples": Range(10, MAX_SAMPLES),
    "ReconConfig.holdout_fraction": FRACTION,
    "ReconConfig.seeds": Range(1, 100),
    "ReconConfig.max_epochs": Range(1, MAX_EPOCHS),
    "ReconConfig.patience": Range(1, MAX_EPOCHS),
    "ReconConfig.lr": LR,
    "ReconConfig.hidden_channels": Range(1, 4096),
    "ReconConfig.batch_size": Range(2, MAX_BATCH),
    "RidgeConfig.train_samples": Range(4, MAX_SAMPLES),
    "RidgeConfig.holdout_fraction": FRACTION,
    "RidgeConfig.penalties": _lo_open(0, 1e12),
    "RidgeConfig.seeds": Range(1, 100),
    "ProxyConfig.epochs": Range(1, 10_000),
    "ProxyConfig.rungs": Range(1, 20),
    "ProxyConfig.reduction_factor": Range(2, 100),
    "ProxyConfig.seeds": Range(1, 100),
    "ProxyConfig.seed": SEED,
    "ProxyConfig.bootstrap": Range(100, 1_000_000),
    "ScoringConfig.num_samples": Range(2, 1_000_000),
    "ScoringConfig.seed": SEED,
    "ScoringConfig.batch_size": Range(1, MAX_BATCH),
    "ScoringConfig.x_weight": Range(0, 100),
    "ScoringConfig.y_weight": Range(0, 100),
    "ScoringConfig.ensemble_sizes": Range(2, 100),
    "ScoringConfig.min_gap_fraction": _hi_open(0, 1),
    "ScoringConfig.folds": Range(2, 1000),
    "ScoringConfig.bootstrap": Range(100, 1_000_000),
    "ScoringConfig.kde_noise_var": _lo_open(0, 100),
    "ScoringConfig.kde_shuffles": Range(1, 1000),
    "ScoringConfig.binning_bins": Range(2, 10_000),
    "ScoringConfig.feature_cache_mb": Range(0, 10_000_000),
    "SweepConfig.temperature": TEMPERATURE,
    "SweepConfig.kd_weight": WEIGHT,
    "SweepConfig.seeds": SEED,
    "SweepConfig.grace_period": Range(1, MAX_EPOCHS),
    "SweepConfig.reduction_factor": _lo_open(1, 100),
    "SweepConfig.num_samples": Range(1, 1_000_000),
    "SweepConfig.max_failures": Range(-1, 1000),
    "SweepConfig.max_concurrent": Range(0, 100_000),
    "SweepConfig.checkpoint_every": Range(1, MAX_EPOCHS),
    "SweepConfig.trials_per_experiment": Range(0, 1_000_000),
    "SweepConfig.max_rounds": Range(1, 100),
    "SweepConfig.growth": _lo_open(1, 100),
    "BudgetConfig.teacher_epochs": _lo_open(0, 1e12),
    "BudgetConfig.student_epochs": _lo_open(0, 1e12),
    "BudgetConfig.device_hours": _lo_open(0, 1e9),
    "ResourcesConfig.cpus": Range(0, 10_000),
    "ResourcesConfig.gpus": Range(0, 1000),
    "ClusterConfig.num_cpus": Range(1, 1_000_000),
    "ClusterConfig.num_gpus": Range(0, 10_000),
    "ClusterConfig.scorers": Range(1, 1000),
    "ClusterConfig.max_actor_restarts": Range(-1, 1000),
    "ClusterConfig.connect_timeout_s": SECONDS,
    "ClusterConfig.progress_interval_s": SECONDS,
    "ReportConfig.alpha": _open(0, 0.5),
    "ReportConfig.equivalence_margin": _open(0, 100),
}
NUMBERS = (int, float)


def _finite(x: float) -> bool:
    """Python ints are always finite (and may be too large for ``math.isfinite``)."""
    return isinstance(x, int) or math.isfinite(x)


def _numeric_kind(hint: Any) -> tuple[bool, bool] | None:
    """``(is_list, is_float)`` for an int/float field, an optional one or a list of them; else None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint in NUMBERS:
        return False, hint is float
    if typing.get_origin(hint) is list and args and args[0] in NUMBERS:
        return True, args[0] is float
    if len(args) == 1 and args[0] in NUMBERS:  # X | None
        return False, args[0] is float
    return None


@functools.cache
def numeric_fields(cls: type = ExperimentConfig, prefix: str = "") -> tuple[tuple[str, str, bool], ...]:
    """Every numeric field of the schema: ``(dotted key, bound name, is_list)``, in schema order."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, str, bool]] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out += numeric_fields(hint, f"{prefix}{f.name}.")
            continue
        kind = _numeric_kind(hint)
        if kind is not None:
            out.append((f"{prefix}{f.name}", f"{cls.__name__}.{f.name}", kind[0]))
    return tuple(out)


def _get(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = getattr(node, part, None) if node is not None else None
    return node


def _check_number(value: Any, key: str, bound: Range, finite_only: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, NUMBERS):
        return  # the schema's types are checked by the loader
    if not (_finite(value) if finite_only else bound.contains(value)):
        what = "a finite number in" if not _finite(value) else "in"
        raise ConfigError(f"config key {key!r}: {value!r} is out of range; must be {what} {bound.describe()}")


def check_bounds(cfg: Any, finite_only: bool = False) -> None:
    """Every numeric value of ``cfg`` is finite and within ``BOUNDS``; list lengths are at most
    ``MAX_LIST``; numbers in ``data.options`` are finite. Raises ``ConfigError`` naming the key.
    ``finite_only``: only refuse nan and inf (run before the checks that compare values)."""
    for key, name, is_list in numeric_fields():
        if name not in BOUNDS:
            raise RuntimeError(f"config field {key} ({name}) has no bound in harness/config_bounds.py BOUNDS")
        value = _get(cfg, key)
        if value is None:
            continue
        if not is_list:
            _check_number(value, key, BOUNDS[name], finite_only)
            continue
        if len(value) > MAX_LIST and not finite_only:
            raise ConfigError(f"config key {key!r}: {len(value)} values; at most {MAX_LIST}")
        for i, item in enumerate(value):
            _check_number(item, f"{key}[{i}]", BOUNDS[name], finite_only)
    _check_finite_options(_get(cfg, "data.options"), "data.options")


def _check_finite_options(node: Any, key: str) -> None:
    """Free-form dataset options: any float in them must at least be finite."""
    if node is None or isinstance(node, (str, bool)):
        return
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config key {key!r}: {node!r} is not a finite number")
    if hasattr(node, "items"):
        for k, v in node.items():
            _check_finite_options(v, f"{key}.{k}")
    elif isinstance(node, (list, tuple)) or (hasattr(node, "__iter__") and hasattr(node, "__len__")):
        for i, v in enumerate(node):
            _check_finite_options(v, f"{key}[{i}]")
