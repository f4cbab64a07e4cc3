"""Config validation: what the schema's types cannot check (ranges, known names, consistency),
before any compute is spent; each failure is a ``ConfigError`` that names its key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from harness.config import (
    DEVICE_DATA_MODES,
    DEVICE_PATTERN,
    PRECISIONS,
    REPORTED_EPOCHS,
    ConfigError,
    is_safe_name,
    range_parts,
    range_text,
    seed_list,
)
from harness.config_bounds import MAX_LIST, MAX_PACK, MAX_SEED, MAX_THREADS, check_bounds
from harness.registry import did_you_mean, known_names, parse_name, unknown_name_message


def _check(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r}: {msg}")


def _check_known(value: str, key: str, known: list[str], kind: str) -> None:
    _check(value in known, key, unknown_name_message(kind, value, known))


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
    """Check what the schema's types cannot: ranges, known names, consistency (before compute).
    Every number is finite (checked first) and within ``harness/config_bounds.py``'s bounds (last,
    so the specific messages below come first)."""
    _check_slug(cfg.name, "name")
    check_bounds(cfg, finite_only=True)
    _check(
        0 <= cfg.threads <= MAX_THREADS,
        "threads",
        f"{cfg.threads} is out of range; must be in [0, {MAX_THREADS}] (0: each stage's cluster.<stage>.cpus)",
    )
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
    _validate_adaptive(cfg)
    check_bounds(cfg)


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
    validate_seeds(t.seeds, "teacher.seeds")
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
    teacher_pack_size_setting(t)
    _validate_optim(s.optim, "student.optim")


def _validate_distill(cfg: Any) -> None:
    d, t = cfg.distill, cfg.teacher
    _check(d.temperature > 0, "distill.temperature", "must be positive")
    _check(0.0 <= d.kd_weight <= 1.0, "distill.kd_weight", "must lie in [0, 1]")
    if d.teacher_arch is not None:
        _check_known(d.teacher_arch, "distill.teacher_arch", list(t.archs), "teacher arch (not in teacher.archs)")
    if d.teacher_seed is not None:
        _check(
            d.teacher_seed in seed_list(t),
            "distill.teacher_seed",
            f"{d.teacher_seed} is not in teacher.seeds {seeds_text(t.seeds)}",
        )
    if d.student_arch is not None:
        _check_known(d.student_arch, "distill.student_arch", known_names("model"), "model")
    _check_choice(d.teacher_choice, "distill.teacher_choice")
    for i, choice in enumerate(cfg.sweep.teacher_choices):
        if choice != "every_checkpoint":
            _check_choice(choice, f"sweep.teacher_choices[{i}]")


RANGE_HINT = "range(start, stop[, step])"


def seeds_text(value: Any, limit: int = 10) -> str:
    """Seeds as the user wrote them, short: ``range(0, 100000)`` or ``[0, 1, 2]`` (long lists cut)."""
    if isinstance(value, str):
        return value.strip()
    items = list(value)
    return "[" + ", ".join(map(str, items[:limit])) + (", ...]" if len(items) > limit else "]")


def validate_seeds(value: Any, key: str) -> Sequence[int]:
    """``teacher.seeds`` / ``sweep.seeds``: a list of distinct ints (at most ``MAX_LIST``) or
    ``range(start, stop[, step])`` (positive step, not empty), every seed in [0, ``MAX_SEED``];
    the seeds (``seed_list``), else a one-line ConfigError naming ``key`` and the fix."""
    if isinstance(value, str):
        return _validate_range(value, key)
    if value is None or isinstance(value, (bool, int, float)):
        got = "nothing" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        fix = f"; write {key}=[{value}]" if isinstance(value, int) and not isinstance(value, bool) else ""
        _check(False, key, f"expected a list, got {got}{fix} (or {key}={RANGE_HINT} for a long grid)")
    if hasattr(value, "keys") or not hasattr(value, "__len__"):
        _check(False, key, f"expected a list of integers or {RANGE_HINT}, got {value}")
    for i, x in enumerate(value):
        _check(
            isinstance(x, int) and not isinstance(x, bool), key, f"expected a list of integers; element {i} is {x!r}"
        )
        _check(0 <= x <= MAX_SEED, f"{key}[{i}]", f"{x!r} is out of range; must be in [0, {MAX_SEED}]")
    _check(len(value) > 0, key, f"needs at least one seed, e.g. {key}=[0,1,2]")
    n = len(value)
    _check(n <= MAX_LIST, key, f"{n} values; at most {MAX_LIST} in a list (more seeds: {key}={RANGE_HINT})")
    twice = [s for s, c in Counter(value).items() if c > 1]
    _check(not twice, key, f"has duplicates ({', '.join(map(str, twice[:5]))}); list each seed once")
    return seed_list(value)


def _validate_range(text: str, key: str) -> range:
    parts = range_parts(text)
    _check(
        parts is not None,
        key,
        f"{text!r} is neither a list of seeds nor {RANGE_HINT} with integers; e.g. {key}=[0,1,2] or {key}=range(0,100)",
    )
    start, stop, step = parts  # type: ignore[misc]
    written = range_text(start, stop, step)
    if step <= 0:
        down = range(start, stop, step) if step else range(0)
        fix = f"write {range_text(down[-1], down[0] + 1, -step)}" if down else f"e.g. {range_text(start, start + 10)}"
        _check(False, key, f"{written}: the step must be positive (seeds in increasing order); {fix}")
    seeds = range(start, stop, step)
    _check(
        len(seeds) > 0,
        key,
        f"{written} is empty; the stop must be above the start, e.g. {range_text(start, start + 10)}",
    )
    _check(
        start >= 0 and seeds[-1] <= MAX_SEED,
        key,
        f"{range_text(start, stop, step)} is out of range; every seed must be in [0, {MAX_SEED}]",
    )
    return seeds


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
    validate_seeds(s.seeds, "sweep.seeds")
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
    return _pack_size(s.pack_size, "sweep.pack_size")


def teacher_pack_size_setting(t: Any) -> int | None:
    """``teacher.pack_size`` as an int, or None for ``auto``; raises ConfigError for anything else."""
    return _pack_size(t.pack_size, "teacher.pack_size")


def _pack_size(value: Any, key: str) -> int | None:
    text = str(value).strip()
    if text == "auto":
        return None
    _check(
        text.isdigit() and 1 <= int(text) <= MAX_PACK,
        key,
        f"must be a positive integer or auto (at most {MAX_PACK}), got {text!r}",
    )
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
        _check(res.cpus >= 0, f"cluster.{r}.cpus", "must be >= 0")
        _check(res.gpus >= 0, f"cluster.{r}.gpus", "must be >= 0")
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
    _check(sc.x_weight >= 0, "scoring.x_weight", "must be >= 0")
    _check(sc.y_weight >= 0, "scoring.y_weight", "must be >= 0")
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
    _check(len(sc.ridge.penalties) > 0, "scoring.ridge.penalties", "needs at least one penalty")
    _validate_proxy(sc.proxy)


def _validate_proxy(p: Any) -> None:
    """The ``scoring.proxy`` section: proxy selector names, the proxy student, the rungs."""
    proxies = [n for n in known_names("selector") if n.startswith("proxy")]
    _check_names(p.selectors, "scoring.proxy.selectors", "proxy selector", proxies)
    _check(len(set(p.selectors)) == len(p.selectors), "scoring.proxy.selectors", "has duplicates")
    if p.student is not None:
        _check_known(p.student, "scoring.proxy.student", known_names("model"), "model")
    _check(
        1 <= p.epochs <= 10_000,
        "scoring.proxy.epochs",
        f"must lie in [1, 10000] (epochs of the first rung), got {p.epochs}",
    )
    _check(1 <= p.rungs <= 20, "scoring.proxy.rungs", f"must lie in [1, 20], got {p.rungs}")
    _check(
        2 <= p.reduction_factor <= 100,
        "scoring.proxy.reduction_factor",
        f"must lie in [2, 100] (keep 1/reduction_factor per rung), got {p.reduction_factor}",
    )
    _check(
        p.epochs * p.reduction_factor ** (p.rungs - 1) <= 10_000,
        "scoring.proxy",
        f"epochs x reduction_factor^(rungs-1) = {p.epochs * p.reduction_factor ** (p.rungs - 1)} epochs "
        "for the last rung; at most 10000",
    )
    _check(p.seeds >= 1, "scoring.proxy.seeds", f"must be >= 1, got {p.seeds}")
    _check(p.seed >= 0, "scoring.proxy.seed", "must be >= 0")
    _check(p.bootstrap >= 100, "scoring.proxy.bootstrap", "must be >= 100 resamples")


def _validate_report(r: Any) -> None:
    _check_choice(r.reference, "report.reference")
    _check(
        r.reported in REPORTED_EPOCHS,
        "report.reported",
        f"{r.reported!r}: use {' or '.join(REPORTED_EPOCHS)} (the student epoch whose test accuracy is reported)"
        + _suggest(str(r.reported), REPORTED_EPOCHS),
    )
    _check(0.0 < r.alpha < 0.5, "report.alpha", "must lie in (0, 0.5)")
    _check(
        0.0 < r.equivalence_margin < 100.0,
        "report.equivalence_margin",
        f"must lie in (0, 100) percentage points, got {r.equivalence_margin}",
    )


def _validate_adaptive(cfg: Any) -> None:
    """``sweep.until=decided`` (harness/adaptive.py): a budget, a design the rounds can grow."""
    s = cfg.sweep
    for i, choice in enumerate(cfg.report.compare):
        _check(choice in s.teacher_choices, f"report.compare[{i}]", f"{choice!r} is not in sweep.teacher_choices")
    if s.until != "decided":
        return
    b, why = s.budget, "with sweep.until=decided"
    _check(
        b.device_hours is not None or (b.teacher_epochs is not None and b.student_epochs is not None),
        "sweep.budget",
        f"{why} bound both teachers and students (the most the rounds may spend): set sweep.budget.device_hours, "
        "or both sweep.budget.teacher_epochs and sweep.budget.student_epochs",
    )
    _check(
        s.teacher_seeds == "paired",
        "sweep.teacher_seeds",
        f"{why} must be paired (each trajectory teaches its own seeds)",
    )
    _check(s.search == "grid" and s.num_samples == 1, "sweep.search", f"{why} needs search=grid and num_samples=1")
    _check(
        s.scheduler == "none",
        "sweep.scheduler",
        f"{why} must be none (a stopped trial leaves a comparison without its pair)",
    )
    n, seeds = len(seed_list(cfg.teacher)), len(seed_list(s))
    _check(n >= 2, "teacher.seeds", f"{why} needs at least 2 trajectories in round 0 (a spread to test with)")
    _check(
        seeds >= n and seeds % n == 0,
        "sweep.seeds",
        f"{why} sets the students per trajectory of round 0: give len(teacher.seeds) x m seeds "
        f"({n} or {2 * n}, ...), got {seeds}",
    )
