"""Distill students from teacher choices and record one result row per student.

Students that share architecture and recipe (``cfg.student``: epochs, batch size, optimizer
schedule) train as one *pack* (``harness/student_pack.py``), whatever their seed (init and data
order), teacher choice, temperature or kd_weight; ``distill_student`` is a pack of one, the same
code path. Runs are resolved to their teacher checkpoints and run ids by ``harness/runs.py``
(sha256-checked checkpoints from the store). When the training split has no augmentation, each
checkpoint's logits come from the shared cache (``harness/teacher_logits.py``: computed once per
checkpoint for every trial) and each member's soft targets are precomputed from them; with
augmentation the teachers run per batch, one vmapped pass per ensemble (``FrozenTeacher``)
serving every member that sees the same batch.

**Evaluation** (issue 22): validation after every epoch (what the best epoch and Tune's
schedulers rank on), test only where a row reports it: after the last epoch, and at each
member's best-val epoch from a copy of its weights kept when its validation accuracy last
improved (``_keep_best``, ``_test_best``). Evaluating touches no RNG or training state, so the
rows are bit for bit those of testing every epoch; a row's ``test_acc_per_epoch`` is null at
the epochs not tested on.

Every row says where it was computed (``environment``: ``harness/fingerprint.py``) and with which
final weights (``weights_sha256``). ``retrain`` trains runs and builds their rows without recording
anything: ``ckd verify`` (``harness/verify.py``) compares them with the stored rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from harness import failures
from harness.config import ExperimentConfig
from harness.experiment import load_splits, open_store, set_threads
from harness.fingerprint import environment, state_sha256
from harness.leases import train_leased
from harness.packing import threads_of_pack
from harness.runs import ResolvedRun, ResultRow, Run, RunResolver, teachers_text
from harness.store import StoreError
from harness.student_pack import StudentPack, build_pack, evaluate, load_pack_state, pack_state, train_epoch
from harness.teacher_logits import LogitCache
from harness.training import metrics_from_logits, resolve_device

logger = logging.getLogger(__name__)
OnEpoch = Callable[[dict, dict], None]
_test_every_epoch = False  # the old policy (test after every epoch); tests compare against it only


class ForeignState(StoreError):
    """A saved pack state that belongs to other runs: refused, never isolated per member (the
    state file, not a member, is wrong)."""


@dataclass
class Member:
    """One student of a pack: its resolved run, its teacher's metrics, what its row was computed
    from (``inputs``: the teachers' checkpoint sha256 from their manifests, the data key) and its
    metrics history."""

    run: ResolvedRun
    teacher_metrics: dict[str, float]
    inputs: dict
    history: list[dict] = field(default_factory=list)


@dataclass
class Distillation:
    """A pack being distilled: the trainer's pack, per member what its row records, and the
    members' best-val weights (``_keep_best``)."""

    pack: StudentPack
    members: list[Member]
    best: dict | None = None  # each member's weights (and buffers) of its best-val epoch, stacked

    @property
    def tag(self) -> str:
        if len(self.members) == 1:
            return self.members[0].run.tag
        return f"pack of {len(self.members)} {self.pack.arch}"

    def state(self) -> dict:
        """What a resumed pack continues from (Tune trials save it every few epochs): the pack,
        the histories and the best-val copies whose test accuracy is still to be evaluated."""
        return {
            **pack_state(self.pack),
            "histories": [m.history for m in self.members],
            "run_ids": [m.run.run_id for m in self.members],
            **({"best": self.best} if self.best is not None else {}),
        }


def distill_student(
    cfg: ExperimentConfig, on_epoch: OnEpoch | None = None, resume: dict | None = None, row_fields: dict | None = None
) -> dict:
    """Train one student per ``cfg.distill`` (a pack of one); record and return its result row."""
    return distill_pack(cfg, [Run.from_distill(cfg)], on_epoch, resume, row_fields, isolate=False)[0]


def distill_pack(
    cfg: ExperimentConfig,
    runs: Sequence[Run],
    on_epoch: OnEpoch | None = None,
    resume: dict | None = None,
    row_fields: dict | None = None,
    wait: bool = True,
    isolate: bool = True,
) -> list[dict]:
    """Train the students of ``runs`` as one pack; record and return their result rows, in the
    order of ``runs``.

    ``on_epoch(metrics, state)`` is called after every epoch with the members' mean metrics and a
    resumable ``state``; passing such a state back as ``resume`` continues from it. Runs whose id
    has a row already are not trained again (an O(1) lookup). ``row_fields`` are added to every
    row (e.g. the Tune trial's identity). Each run trains under its lease (``harness/leases.py``):
    runs another process is training are skipped, then waited for (``wait=False``: left out, their
    row is None), and trained here only if that process died without recording them.
    ``isolate`` (a sweep): a run that cannot train is recorded (``harness/failures.py``; its row
    is None) and the others go on (``_train_isolated``); ``isolate=False`` (``ckd distill``'s one
    run): its error is raised.
    """
    began = time.perf_counter()
    resolver = RunResolver(cfg)
    resolved = [_resolve_or_skip(resolver, r) if isolate else resolver.resolve(r) for r in runs]
    ids = dict.fromkeys(r.run_id for r in resolved if r is not None)
    rows = {rid: resolver.store.results.find(rid) for rid in ids}
    todo = {r.run_id: r for r in resolved if r is not None and rows[r.run_id] is None}  # a run given twice trains once
    for rid in (r for r, row in rows.items() if row is not None):
        logger.info(f"[distill] run {rid} has a result already; skipping")
    if todo:

        def train(fresh: list[ResolvedRun]) -> dict[str, dict]:
            if not isolate:
                job = _train(cfg, fresh, on_epoch, resume)
                return _record(job, time.perf_counter() - began, row_fields or {}, resolver.store)
            return _train_isolated(cfg, fresh, on_epoch, resume, (began, row_fields or {}), resolver.store)

        rows.update(train_leased(resolver.store, todo, train, wait))
    return [None if r is None else rows.get(r.run_id) for r in resolved]


def _resolve_or_skip(resolver: RunResolver, run: Run) -> ResolvedRun | None:
    """The resolved run, or None after recording why it cannot train (``harness/failures.py``)."""
    got = resolver.resolve_or_reason(run)
    if not isinstance(got, str):
        return got
    entry = failures.record(resolver.store.root, run.to_dict(), "skipped", got, stage="distill")
    logger.warning(f"[distill] {entry['label']} skipped: {got}")
    return None


def _train_isolated(
    cfg: ExperimentConfig,
    runs: list[ResolvedRun],
    on_epoch: OnEpoch | None,
    resume: dict | None,
    timing: tuple[float, dict],
    store,
) -> dict[str, dict]:
    """Train and record ``runs`` as one pack so that one member's failure stays its own: when the
    pack raises a deterministic error (``failures.is_deterministic``), each member is trained
    alone (packing does not change a member's bits) and the ones that fail are recorded as
    failed with their traceback; a transient error (I/O, memory) is raised for a retry."""
    began, fields = timing
    try:
        job = _train(cfg, runs, on_epoch, resume)
    except ForeignState:
        raise
    except Exception as e:
        if not failures.is_deterministic(e):
            raise
        if len(runs) == 1:
            _record_failure(store.root, runs[0], e)
            return {}
        logger.warning(
            f"[distill] a pack of {len(runs)} failed ({failures.reason_of(e)}); training its "
            "members one at a time, so that the failure stays with its member"
        )
        out: dict[str, dict] = {}
        for run in runs:
            out.update(_train_isolated(cfg, [run], None, None, (time.perf_counter(), fields), store))
        return out
    return _record(job, time.perf_counter() - began, fields, store)


def _record_failure(root, run: ResolvedRun, error: BaseException) -> None:
    """The failure record of ``run`` (traceback in the experiment's ``failures/`` folder) and one line."""
    reason = failures.reason_of(error)
    entry = failures.record(root, run.run.to_dict(), "failed", reason, error=error, run_id=run.run_id)
    logger.error(f"[distill] FAILED {entry['label']}: {entry['reason']} (traceback: {root}/{entry['log']})")


def retrain(cfg: ExperimentConfig, runs: Sequence[Run | ResolvedRun]) -> list[dict]:
    """Train ``runs`` as one pack, here and now, and return the rows they would record, in the
    order of ``runs`` (a run given twice trains once), WITHOUT recording them: no lease, no
    append, no skipping a run that has a row. ``ckd verify`` re-trains recorded runs with it.
    A ``ResolvedRun`` trains from exactly its teacher checkpoints (e.g. those a row recorded)."""
    if not runs:
        return []
    began = time.perf_counter()
    resolver = RunResolver(cfg)
    resolved = [r if isinstance(r, ResolvedRun) else resolver.resolve(r) for r in runs]
    unique = list({r.run_id: r for r in resolved}.values())
    rows = _rows(_train(cfg, unique), time.perf_counter() - began, {})
    return [rows[r.run_id] for r in resolved]


def _train(
    cfg: ExperimentConfig, runs: list[ResolvedRun], on_epoch: OnEpoch | None = None, resume: dict | None = None
) -> Distillation:
    """Train ``runs`` as one pack for ``cfg.student.epochs`` (from ``resume`` when given)."""
    job = _start(cfg, runs)
    if resume is not None:
        _resume(job, resume)
    for epoch in range(len(job.members[0].history) + 1, cfg.student.epochs + 1):
        metrics = _epoch(job, epoch)
        if epoch == cfg.student.epochs:
            _test_best(job)
        if on_epoch is not None:
            on_epoch(metrics, job.state())
    return job


def _start(cfg: ExperimentConfig, runs: list[ResolvedRun]) -> Distillation:
    """Data, teachers (+ their metrics, from the logit cache) and the pack of students."""
    set_threads(cfg, "trial")
    device = resolve_device(cfg.device)
    archs = {r.run.student_arch for r in runs}
    if len(archs) > 1:
        raise ValueError(f"a pack holds students of one architecture; got {sorted(archs)}")
    splits = load_splits(cfg, device)
    cache = LogitCache(cfg, open_store(cfg), splits, device)
    metrics: dict[tuple, dict[str, float]] = {(): {}}  # teacher metrics once per distinct teacher
    for r in runs:
        if r.teachers not in metrics:
            metrics[r.teachers] = cache.teacher_metrics(list(r.teachers), cfg.distill.ensemble_reduce)
    members = [Member(r, metrics[r.teachers], _inputs(cache, r)) for r in runs]
    pack = build_pack(cfg, archs.pop(), runs, splits, cache, device, cfg.student.epochs)
    return Distillation(pack, members)


def _inputs(cache: LogitCache, run: ResolvedRun) -> dict:
    """What a run's row is computed from: each teacher checkpoint's sha256 (the manifest's, which
    the checkpoint and its cached logits are verified against before use) and the data key."""
    return {"teachers": [cache.sha256(t) for t in run.teachers], "data": cache.key}


def _resume(job: Distillation, state: dict) -> None:
    """Continue from a saved state, which must belong to these very runs (same run ids)."""
    ids = [m.run.run_id for m in job.members]
    if state.get("run_ids") != ids and set(ids) < set(state.get("run_ids") or []):
        logger.warning(
            f"[distill] the saved state is of a pack of {len(state['run_ids'])} of which only {len(ids)} "
            "still lack a result row (the others were recorded before an interruption); these start over"
        )
        return
    if state.get("run_ids") != ids:
        saved = ", ".join(repr(r) for r in state.get("run_ids") or [state.get("run_id")])
        raise ForeignState(
            f"the saved student state belongs to run {saved}, not to {', '.join(map(repr, ids))} "
            "(another config or pack); it was not used. Re-run with --restart to start over"
        )
    load_pack_state(job.pack, state)
    for m, history in zip(job.members, state["histories"]):
        m.history = [dict(h) for h in history]
    if "best" in state:  # (states saved before best-val copies have a test accuracy every epoch)
        job.best = {part: {k: v.clone() for k, v in tensors.items()} for part, tensors in state["best"].items()}
    logger.info(f"[distill] resuming {job.tag} after epoch {len(job.members[0].history)}")


def _epoch(job: Distillation, epoch: int) -> dict:
    """Train one epoch, evaluate every member on val (and on test after the last epoch only:
    test is reported there and at the best-val epoch, ``_test_best``), keep the best-val copies,
    log; the members' mean metrics and, under ``runs``, each member's own (``_identity``)."""
    cfg, members = job.pack.cfg, job.members
    t0 = time.perf_counter()
    res = train_epoch(job.pack, epoch, f"[{job.tag}]")
    per_member = [
        {"epoch": epoch, "train_loss": float(res.loss[i]), "train_acc": float(res.acc[i])} for i in range(len(members))
    ]
    last = epoch == cfg.student.epochs
    for name in ("val", "test") if last or _test_every_epoch else ("val",):
        logits, y = evaluate(job.pack, name)
        for i, m in enumerate(per_member):
            m.update(metrics_from_logits(logits[i], y, name))
    if not last:
        _keep_best(job, [m["val_acc"] for m in per_member])
    seconds = time.perf_counter() - t0
    for m, metrics in zip(members, per_member):
        metrics["seconds"] = seconds
        m.history.append(metrics)
    mean = {k: sum(m[k] for m in per_member) / len(per_member) for k in per_member[0]}
    runs = [{**_identity(m.run), **metrics} for m, metrics in zip(members, per_member)]
    test = f" test {mean['test_acc']:6.2%}" if "test_acc" in mean else ""  # the last epoch only
    logger.info(
        f"[{job.tag}] epoch {epoch:3d}/{cfg.student.epochs} loss {mean['train_loss']:.4f} acc {mean['train_acc']:6.2%} "
        f"val {mean['val_acc']:6.2%}{test} {seconds:5.2f}s" + ("" if len(members) == 1 else " (means over the pack)")
    )
    return {**mean, "epoch": epoch, "members": len(members), "runs": runs}


def _best_val(history: list[dict]) -> float:
    return max((h["val_acc"] for h in history), default=-1.0)


def _best_entry(history: list[dict]) -> dict:
    """The epoch a row reports as best: the highest validation accuracy, the earlier on ties."""
    return max(history, key=lambda h: (h["val_acc"], -h["epoch"]))


def _keep_best(job: Distillation, val: list[float]) -> None:
    """Copy the slices of the members whose validation accuracy beats their best so far (ties:
    the earlier epoch stays best, as in ``ResultRow.of``) into ``job.best``; nothing else is
    touched (no RNG, no training state), so the run's bits are those of an unevaluated run."""
    improved = [i for i, (m, v) in enumerate(zip(job.members, val)) if v > _best_val(m.history)]
    state = job.pack.model.state_dict()
    if job.best is None:
        job.best = {part: {k: v.clone() for k, v in tensors.items()} for part, tensors in state.items()}
    elif improved:
        index = torch.tensor(improved, dtype=torch.long)
        for part, tensors in state.items():
            for k, v in tensors.items():
                if v.dim() > 0:
                    job.best[part][k][index.to(v.device)] = v[index.to(v.device)]


def _test_best(job: Distillation) -> None:
    """Test accuracy at each member's best-val epoch, where its history lacks it: the pack's
    weights swapped for the best-val copies for one test pass, then put back (exact copies)."""
    need = [i for i, m in enumerate(job.members) if "test_acc" not in _best_entry(m.history)]
    if not need:
        return
    if job.best is None:
        raise RuntimeError("no best-validation weights kept for the test at the best epoch")
    model = job.pack.model
    final = {part: {k: v.clone() for k, v in tensors.items()} for part, tensors in model.state_dict().items()}
    model.load_state_dict(job.best)
    try:
        logits, y = evaluate(job.pack, "test")
    finally:
        model.load_state_dict(final)
    for i in need:
        _best_entry(job.members[i].history)["test_acc"] = metrics_from_logits(logits[i], y, "test")["test_acc"]


def _identity(run: ResolvedRun) -> dict:
    """Who a member is, for per-member reports (Tune, W&B): run id, label, the grid point and
    the resolved teacher checkpoints (``trajectory:epoch`` joined by ``+``)."""
    grid_point = run.run.to_dict()
    return {
        "run_id": run.run_id,
        "label": failures.run_label(grid_point),
        **grid_point,
        "teachers": teachers_text(run.teachers),
    }


def _rows(job: Distillation, wall_time_s: float, fields: dict) -> dict[str, dict]:
    """Each member's result row (``harness/runs.py``'s ``ResultRow``), with the fingerprint of
    where it was computed and the sha256 of its final weights; by run id. Nothing is written."""
    pack, cfg = job.pack, job.pack.cfg
    env = environment(pack.device, threads_of_pack(pack.device), cfg.precision)  # the threads it computed with
    out = {}
    for i, m in enumerate(job.members):
        out[m.run.run_id] = ResultRow.of(
            cfg,
            m.run,
            m.teacher_metrics,
            m.history,
            wall_time_s,
            len(job.members),
            str(pack.device),
            fields,
            m.inputs,
            environment=env,
            weights_sha256=state_sha256(pack.model.member_state_dict(i)),
        ).to_dict()
    return out


def _record(job: Distillation, wall_time_s: float, fields: dict, store) -> dict[str, dict]:
    """Write each member's row (``_rows``), each verified by reading it back
    (``ResultsTable.append``); the stored rows by run id."""
    out, rows = {}, _rows(job, wall_time_s, fields)
    for m in job.members:
        row = rows[m.run.run_id]
        failures.clear(store.root, [m.run.run.to_dict()])  # it trained after all
        if store.append_result(row):  # True only once the row file is written and read back
            logger.info(
                f"[{m.run.tag}] final test acc {row['final_test_acc']:.2%} (val {row['final_val_acc']:.2%}); "
                f"row {m.run.run_id} recorded in {store.results.rows_dir}"
            )
        else:  # another process recorded this run meanwhile: its row is the one that counts
            row = store.results.find(m.run.run_id) or row
            logger.info(f"[{m.run.tag}] run {m.run.run_id} was recorded meanwhile by another process; kept its row")
        out[m.run.run_id] = row
    return out
