"""``ckd verify``: re-compute recorded results here and now and say whether they come out bit for bit.

A leaderboard is only as good as "re-run row X and you get its number". ``verify`` picks ``K``
recorded runs of the config (``random.Random(S).sample`` over its counted rows sorted by run id),
re-trains each alone (``distill.retrain``: a pack of one, from the teacher checkpoints the row
recorded, sha256-verified) and compares every deterministic value of the row: accuracies, best
epoch, the per-epoch curves, the teacher metrics, ``inputs`` and ``weights_sha256`` (not
``wall_time_s``, ``pack_size``, ``device``, Tune fields, ``digest`` or ``environment``).
``trajectories=True`` re-trains ``K`` finished trajectories from scratch in a scratch store and
compares every checkpoint's weights tensor by tensor (``torch.equal``) and the manifest's metrics;
``scores=True`` re-scores ``K`` scored trajectories (from copies of their checkpoints) and compares
the scores file's estimates and picks (not timings or the estimates' ``cost_s``, not ``environment``).

A difference is *expected* when the recorded environment fingerprint (``harness/fingerprint.py``)
differs from this process's in some field (another torch, CPU, thread count, ...), and a
reproducibility bug when it does not: ``Verification.exit_status`` is 1 then, else 0. Each
re-computation runs with the threads of the stage it re-checks (``set_threads``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from harness.config import ConfigError, EnsembleReduce, ExperimentConfig, config_hash
from harness.experiment import TrajectorySpec, open_store, set_threads, trajectory_specs
from harness.fileio import atomic_write_bytes, read_regular_bytes
from harness.fingerprint import differing
from harness.objects import ObjectPath, node_local_dir, storage_location
from harness.row_schema import ACCURACIES, CURVES, ENVIRONMENT_KEY, INPUTS_KEY, TEACHER_RUN_KEYS, WEIGHTS_KEY
from harness.runs import ResolvedRun, Run, RunResolver
from harness.store import CHECKPOINT_MAX_BYTES, MANIFEST, StoreError, Trajectory
from harness.teacher_choices import TeacherRef

logger = logging.getLogger(__name__)
T = TypeVar("T")

ROW_VALUES = ("epochs", *ACCURACIES, "best_val_epoch", *CURVES, INPUTS_KEY)  # + teacher metrics, weights_sha256
# keys of a manifest or scores file that say when, where or how fast, not what was computed
NOT_COMPARED = frozenset(
    {"environment", "environments", "wall_time_s", "seconds", "setup_s", "timings", "cost_s", "written_at", "digest"}
    | {"cost", "device", "num_threads"}
)
MANIFEST_NOT_COMPARED = NOT_COMPARED | {"sha256", "file"}  # the weights are compared tensor by tensor instead
SHOWN = 6  # differing values named per line


@dataclass
class Check:
    """One re-computed artifact: what (``kind``: run, trajectory, scores; ``name``), which values
    differ from the stored ones, in which environment fields the recorded fingerprint differs
    from this process's (``["not recorded"]`` when the artifact has none) and, for runs and
    trajectories, the final test accuracy's change in percentage points."""

    kind: str
    name: str
    differs: list[str] = field(default_factory=list)
    fingerprint: list[str] = field(default_factory=list)
    acc_pp: float | None = None

    @property
    def status(self) -> str:
        """``bit-identical``, ``expected`` (differs, and so does the environment) or ``irreproducible``."""
        if not self.differs:
            return "bit-identical"
        return "expected" if self.fingerprint else "irreproducible"

    def line(self) -> str:
        head = f"{self.kind} {self.name}: "
        if not self.differs:
            also = [f for f in self.fingerprint if f != "not recorded"]
            return (
                head + "bit-identical" + (f" (although the environment differs in {', '.join(also)})" if also else "")
            )
        shown = ", ".join(self.differs[:SHOWN]) + (
            f" (+{len(self.differs) - SHOWN} more)" if len(self.differs) > SHOWN else ""
        )
        acc = f"final test acc {self.acc_pp:+.2f} pp; " if self.acc_pp is not None else ""
        why = (
            f"differs, expected: environment differs in {', '.join(self.fingerprint)}"
            if self.fingerprint
            else "DIFFERS under an identical environment (a reproducibility bug)"
        )
        return f"{head}{why}; {acc}values that differ: {shown}"


@dataclass
class Verification:
    """Every check of one ``ckd verify``; ``str()`` is the report (a line per check, a summary)."""

    checks: list[Check]

    @property
    def exit_status(self) -> int:
        """1 when something differs under an identical fingerprint, else 0."""
        return int(any(c.status == "irreproducible" for c in self.checks))

    def __str__(self) -> str:
        counts = {s: sum(c.status == s for c in self.checks) for s in ("bit-identical", "expected", "irreproducible")}
        kinds = {k: sum(c.kind == k for c in self.checks) for k in dict.fromkeys(c.kind for c in self.checks)}
        names = {
            "run": ("run", "runs"),
            "trajectory": ("trajectory", "trajectories"),
            "scores": ("scores file", "scores files"),
        }
        what = ", ".join(f"{n} {names.get(k, (k, k))[n != 1]}" for k, n in kinds.items())
        summary = (
            f"verify: {what or 'nothing'} re-computed: {counts['bit-identical']} bit-identical, "
            f"{counts['expected']} differ where the environment differs, "
            f"{counts['irreproducible']} differ under an identical environment"
        )
        return "\n".join([*(c.line() for c in self.checks), summary])


def verify(
    cfg: ExperimentConfig, runs: int = 3, seed: int = 0, trajectories: bool = False, scores: bool = False
) -> Verification:
    """``ckd verify``: re-compute ``runs`` recorded runs (and as many trajectories / scores files
    when asked), chosen at random with ``seed``; see the module doc."""
    if runs < 0:
        raise ConfigError(f"--runs must be 0 or more, not {runs}")
    checks = check_runs(cfg, runs, seed) if runs else []
    if trajectories and runs:
        checks += check_trajectories(cfg, runs, seed)
    if scores and runs:
        checks += check_scores(cfg, runs, seed)
    return Verification(checks)


def pick(items: Sequence[T], k: int, seed: int) -> list[T]:
    """``k`` of ``items`` (all when fewer) at random with ``seed``: the same picks for the same store."""
    return random.Random(seed).sample(list(items), min(k, len(items)))


# ----------------------------------------------------------------------------- result rows


def check_runs(cfg: ExperimentConfig, k: int, seed: int) -> list[Check]:
    """Re-train ``k`` recorded runs, each alone, and compare them with their rows."""
    from harness.distill import retrain

    rows, _ = RunResolver(cfg).counted(open_store(cfg).read_results())
    if not rows:
        raise StoreError(
            f"no recorded result rows of this config in {open_store(cfg).results.rows_dir}; "
            "run `ckd sweep CONFIG` or `ckd distill CONFIG` first"
        )
    chosen = pick(sorted(rows, key=lambda r: r["run_id"]), k, seed)
    logger.info(f"[verify] re-training {len(chosen)} of {len(rows)} recorded runs, each alone")
    checks = []
    for row in chosen:
        run_cfg, resolved = recorded_run(cfg, row)
        again = json.loads(json.dumps(retrain(run_cfg, [resolved])[0], default=str))  # as a row file reads back
        check = Check("run", f"{row['run_id'][:12]} {resolved.tag}", compare_rows(row, again))
        check.fingerprint = _fingerprint_diff([row.get(ENVIRONMENT_KEY)], again.get(ENVIRONMENT_KEY))
        check.acc_pp = 100 * (again["final_test_acc"] - row["final_test_acc"]) if check.differs else None
        logger.info(f"[verify] {check.line()}")
        checks.append(check)
    return checks


def recorded_run(cfg: ExperimentConfig, row: Mapping[str, Any]) -> tuple[ExperimentConfig, ResolvedRun]:
    """The config and run a row was trained with: its run fields, its teacher checkpoints as
    recorded (not resolved again: scores may have changed since) and its ensemble reduction."""
    run_cfg = copy.deepcopy(cfg)
    try:
        run_cfg.distill.ensemble_reduce = EnsembleReduce(row["ensemble_reduce"])
    except ValueError:
        raise StoreError(f"row {row['run_id']} records an unknown ensemble_reduce {row['ensemble_reduce']!r}") from None
    teachers = tuple(TeacherRef(c["trajectory"], int(c["epoch"])) for c in row["teacher_checkpoints"])
    resolved = ResolvedRun(Run.from_dict(run_cfg, row), teachers, row["ensemble_reduce"], str(row["run_id"]))
    return run_cfg, resolved


def compare_rows(stored: Mapping[str, Any], again: Mapping[str, Any]) -> list[str]:
    """The deterministic values of a row (module doc) in which ``again`` differs from ``stored``;
    ``weights_sha256`` only when the stored row records one."""
    metrics = {  # teacher metrics are numbers (a Tune row's teacher_seeds_policy is not one)
        k
        for row in (stored, again)
        for k, v in row.items()
        if k.startswith("teacher_") and k not in TEACHER_RUN_KEYS and isinstance(v, (int, float))
    }
    keys = [*ROW_VALUES, *sorted(metrics)] + ([WEIGHTS_KEY] if stored.get(WEIGHTS_KEY) else [])
    return [k for k in keys if not _same_value(k, stored.get(k), again.get(k))]


def _same_value(key: str, a: Any, b: Any) -> bool:
    """Equal; a test curve only where both evaluated test (rows from before issue 22 have a test
    accuracy at every epoch, newer ones only at the final and best-validation epochs: null else)."""
    if key == "test_acc_per_epoch" and isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return all(x is None or y is None or x == y for x, y in zip(a, b))
    return a == b


def _fingerprint_diff(recorded: Sequence[Mapping[str, Any] | None], now: Mapping[str, Any] | None) -> list[str]:
    """The fields in which any of the ``recorded`` fingerprints (a trajectory resumed elsewhere
    has several) differs from ``now``; ``["not recorded"]`` when none was recorded."""
    known = [dict(e) for e in recorded if e]
    if not known:
        return ["not recorded"]
    return sorted({f for e in known for f in differing({k: v for k, v in e.items() if k != "from_epoch"}, now)})


# ----------------------------------------------------------------------------- trajectories


def recorded_trajectories(cfg: ExperimentConfig) -> list[TrajectorySpec]:
    """The config's finished trajectories that this config made (same config hash), by name."""
    from harness.teachers import trajectory_config

    store, out = open_store(cfg), []
    for spec in trajectory_specs(cfg):
        traj = store.trajectory(spec.name)
        if traj.is_finished() and traj.manifest().get("config_hash") == config_hash(trajectory_config(cfg, spec)):
            out.append(spec)
    return sorted(out, key=lambda s: s.name)


def check_trajectories(cfg: ExperimentConfig, k: int, seed: int) -> list[Check]:
    """Re-train ``k`` finished trajectories from scratch in a scratch store; compare checkpoints."""
    from harness.teachers import train_trajectory

    specs = recorded_trajectories(cfg)
    if not specs:
        raise StoreError(f"no finished trajectories of this config in {open_store(cfg).trajectories_dir}")
    checks = []
    for spec in pick(specs, k, seed):
        logger.info(f"[verify] re-training trajectory {spec.name} from scratch")
        with scratch_store(cfg) as scratch:
            train_trajectory(scratch, spec.arch, spec.seed)
            stored, again = open_store(cfg).trajectory(spec.name), open_store(scratch).trajectory(spec.name)
            check = Check("trajectory", spec.name, compare_trajectories(stored, again))
            m, m2 = stored.manifest(), again.manifest()
        check.fingerprint = _fingerprint_diff(m.get("environments") or [m.get("environment")], m2.get("environment"))
        if check.differs:
            final = (m["checkpoints"][-1].get("test_acc"), m2["checkpoints"][-1].get("test_acc"))
            check.acc_pp = None if None in final else 100 * (final[1] - final[0])
        logger.info(f"[verify] {check.line()}")
        checks.append(check)
    return checks


def compare_trajectories(stored: Trajectory, again: Trajectory) -> list[str]:
    """Where ``again`` differs from ``stored``: each checkpoint's weights (``torch.equal`` per
    tensor) and payload, the manifest's checkpoint metrics and per-epoch history."""
    out = []
    theirs = {c["epoch"] for c in again.checkpoints()}
    for entry in stored.checkpoints():
        epoch = entry["epoch"]
        if epoch not in theirs:
            out.append(f"e{epoch} checkpoint missing")
            continue
        a, b = stored.load_checkpoint(epoch), again.load_checkpoint(epoch)
        weights_a, weights_b = a.pop("model"), b.pop("model")
        tensors = sorted(
            n
            for n in set(weights_a) | set(weights_b)
            if n not in weights_a or n not in weights_b or not torch.equal(weights_a[n], weights_b[n])
        )
        if tensors:
            out.append(f"e{epoch} weights ({len(tensors)} of {len(weights_a)} tensors: {', '.join(tensors[:3])})")
        out += [f"e{epoch} checkpoint.{p}" for p in compare_json(a, b)]
    m, m2 = stored.manifest(), again.manifest()
    parts = {k: m.get(k) for k in ("checkpoints", "history")}
    return out + [
        f"manifest.{p}" for p in compare_json(parts, {k: m2.get(k) for k in parts}, ignore=MANIFEST_NOT_COMPARED)
    ]


def compare_json(a: Any, b: Any, path: str = "", ignore: frozenset[str] = NOT_COMPARED) -> list[str]:
    """The dotted paths at which two JSON-like values differ, leaving out the keys in ``ignore``."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = sorted((set(a) | set(b)) - ignore, key=str)
        return [p for k in keys for p in compare_json(a.get(k), b.get(k), f"{path}.{k}" if path else str(k), ignore)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in compare_json(x, y, f"{path}[{i}]", ignore)]
    same = a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)  # NaN == NaN here
    return [] if same else [path or "(value)"]


@contextmanager
def scratch_store(cfg: ExperimentConfig) -> Iterator[ExperimentConfig]:
    """``cfg`` on a scratch storage folder (removed after), next to ``storage`` so that the data
    cache (``<storage>/cache``, without the teacher-logit cache) is hard-linked into it, or copied
    where links cannot be made; never a symbolic link. With an object store, a local temp folder
    (the re-computation runs here) starting with this node's data cache."""
    storage = storage_location(str(cfg.storage))
    if isinstance(storage, ObjectPath):
        folder, data = Path(tempfile.mkdtemp(prefix="ckd-verify-")), node_local_dir("data")
    else:
        storage.mkdir(parents=True, exist_ok=True)
        folder, data = Path(tempfile.mkdtemp(prefix=".verify-", dir=storage)), open_store(cfg).cache_dir
    try:
        scratch = copy.deepcopy(cfg)
        scratch.storage, scratch.restart = str(folder), False
        _link_tree(data, open_store(scratch).cache_dir, skip=("logits",))
        yield scratch
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _link_tree(source: Path, target: Path, skip: Sequence[str] = ()) -> None:
    """Regular files under ``source`` hard-linked (else copied) to ``target``; links are left out."""
    if not source.is_dir() or source.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not (here == source and d in skip) and not (here / d).is_symlink()]
        (target / here.relative_to(source)).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            src, dst = here / name, target / here.relative_to(source) / name
            if src.is_symlink() or not src.is_file():
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


# ----------------------------------------------------------------------------- scores files


def check_scores(cfg: ExperimentConfig, k: int, seed: int) -> list[Check]:
    """Re-score ``k`` trajectories whose scores file is fresh for ``cfg``, from copies of their
    checkpoints in a scratch store; compare estimates and picks with the stored file."""
    from harness.scoring.freshness import scores_fresh
    from harness.scoring.runner import score_trajectory
    from harness.scoring.scores_file import environment_of, read_scores

    names = [s.name for s in recorded_trajectories(cfg) if scores_fresh(cfg, s.name)]
    if not names:
        raise StoreError(
            f"no scores files of this config in {open_store(cfg).scores_dir}; run `ckd score CONFIG` first"
        )
    checks = []
    for name in pick(names, k, seed):
        logger.info(f"[verify] re-scoring trajectory {name}")
        stored = read_scores(open_store(cfg), name)
        with scratch_store(cfg) as scratch:
            _copy_trajectory(open_store(cfg).trajectory(name), open_store(scratch).trajectory(name))
            set_threads(scratch, "scorer")
            score_trajectory(scratch, open_store(scratch), name)
            again = read_scores(open_store(scratch), name)
        check = Check("scores", name, compare_json(stored, again))
        check.fingerprint = _fingerprint_diff([environment_of(stored)], environment_of(again))
        logger.info(f"[verify] {check.line()}")
        checks.append(check)
    return checks


def _copy_trajectory(source: Trajectory, target: Trajectory) -> None:
    """The manifest and the checkpoint files it lists (copied: regular files, sha256-checked on load)."""
    target.dir.mkdir(parents=True, exist_ok=True)
    for name in [MANIFEST, *(entry["file"] for entry in source.checkpoints())]:  # a folder or an object store
        data = read_regular_bytes(source.dir / name, CHECKPOINT_MAX_BYTES, "stored file")
        atomic_write_bytes(target.dir / name, data)
