"""Student-aware checkpoint selection (``selected:proxy``): distill briefly from every checkpoint,
keep the best, continue those (successive halving), pick by the proxy students' validation accuracy.

The paper ranks checkpoints by MI estimates of the teacher alone. The direct alternative, which it
never compares with, asks the student: distill a proxy student from each candidate checkpoint and
keep the checkpoint whose student validates best. Brute force (every checkpoint distilled fully)
is what the sweep's ``every_checkpoint`` does; a proxy selector does it short and prunes as it goes:

    rung 0   every checkpoint, trained ``epochs`` epochs                       (n candidates)
    rung i   the best ceil(n_{i-1} / eta) of rung i-1, continued to ``epochs x eta^i`` epochs in all
    stop     after ``rungs`` rungs, or earlier when the next rung would hold a single candidate

with eta = ``scoring.proxy.reduction_factor``. Candidates pass a rung, and T* is chosen from the
last one, by mean validation accuracy over the proxy seeds (ties: the earlier epoch).
``proxy_small`` / ``proxy_large`` scale ``epochs`` by their budget (selection.py's table).

- **Recipe.** Proxy students are ``scoring.proxy.student`` (default: the sweep's
  ``student.archs[0]``) with the student recipe (``student.*``: batch size, optimizer, LR
  schedule), distilled at ``distill.temperature`` / ``distill.kd_weight``. Their schedule spans the
  last rung's total epochs, so the last rung's students finish it; earlier rungs are judged
  mid-schedule.
- **Common random numbers.** Every candidate's students share inits and data orders (seeds
  ``scoring.proxy.seed``, +1, ...), so candidates differ by their teacher only. The seeds lie
  apart from the sweep's student seeds, so the selector evaluation does not credit the proxy with
  the very students of its ground truth.
- **One pack.** All students of a rung train as one pack (``harness/student_pack.py``) on soft targets
  from the teacher-logit cache (``teacher_logits.py``). Between rungs the pack shrinks: each
  survivor keeps its weights, momentum and place in the schedule, so a member ends where the same
  student trained alone for as many epochs ends. Only the training split (soft targets) and the
  validation split are read; proxy students write no result rows (they are not sweep results).
- **Confidence.** P(each last-rung candidate wins) under a paired bootstrap of the validation rows
  (and of the seeds when there are several); it ignores the randomness of the earlier cuts.
- **Cost.** Student-epochs (candidates x seeds x epochs trained, summed over rungs) and wall seconds
  (set-up: data and teacher logits, plus every rung), recorded per rung and in total.

Scores file: ``proxy[selector]`` = ``{settings, hash, candidates, rungs: [{rung, epochs, candidates,
val_acc: {epoch: [per seed]}, val_acc_mean, kept, student_epochs, seconds}], pick, confidence,
cost: {student_epochs, seconds, setup_s}, device, num_threads}``; a file whose hash (settings,
checkpoints' sha256, data, student recipe) matches is reused instead of trained again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness.config import ExperimentConfig, config_hash, to_dict
from harness.data import DataSplits
from harness.experiment import load_splits
from harness.progress import Progress
from harness.student_pack import StudentPack, build_pack, evaluate, shrink, train_epoch
from harness.teacher_choices import TeacherRef, choice_of
from harness.teacher_logits import LogitCache, data_key

from .replicates import UNSTABLE_BELOW, argmax_earliest, fold_weights, summarize_draws
from .scores_file import ScoresError, checkpoint_shas, has_scores, proxy_entries, read_scores
from .selection import PROXY_SELECTORS, SELECTORS, TIE_DECIMALS, rank_by_mean
from .teacher_picks import pick_problem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProxySettings:
    """One proxy selector's settings: ``scoring.proxy`` with the selector's budget applied."""

    selector: str
    student: str
    epochs: int  # of the first rung
    rungs: int
    reduction_factor: int
    seeds: tuple[int, ...]
    temperature: float
    kd_weight: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds)}


def proxy_settings(cfg: ExperimentConfig, selector: str) -> ProxySettings:
    """The settings of proxy selector ``selector`` under ``cfg``."""
    p = cfg.scoring.proxy
    epochs = max(1, round(int(p.epochs) * SELECTORS[selector].budget))
    return ProxySettings(
        selector,
        str(p.student or cfg.student.archs[0]),
        epochs,
        int(p.rungs),
        int(p.reduction_factor),
        tuple(range(int(p.seed), int(p.seed) + int(p.seeds))),
        float(cfg.distill.temperature),
        float(cfg.distill.kd_weight),
    )


def proxy_selectors(cfg: ExperimentConfig) -> list[str]:
    """The proxy selectors a config asks for, in table order: ``scoring.proxy.selectors``, any named
    by a ``selected:<it>`` choice (``distill.teacher_choice``, ``sweep.teacher_choices``,
    ``report.reference``), and ``scoring.ensemble_selector`` / ``degenerate_fallback``."""
    sc = cfg.scoring
    asked = set(sc.proxy.selectors) | {sc.ensemble_selector, sc.degenerate_fallback}
    for choice in [cfg.distill.teacher_choice, *cfg.sweep.teacher_choices, cfg.report.reference]:
        selector = choice_of(str(choice)).selector
        if selector is not None:
            asked.add(selector)
    return [name for name in PROXY_SELECTORS if name in asked]


def rung_sizes(n: int, rungs: int, reduction_factor: int) -> list[int]:
    """Candidates per rung: ``n``, then ceil(previous / reduction_factor), ``rungs`` rungs at most,
    stopping before a rung would hold one candidate (it could compare nothing); [] for n <= 1."""
    if n <= 1:
        return []
    sizes = [n]
    while len(sizes) < rungs and math.ceil(sizes[-1] / reduction_factor) > 1:
        sizes.append(math.ceil(sizes[-1] / reduction_factor))
    return sizes


def rung_epochs(settings: ProxySettings, n_rungs: int) -> list[int]:
    """Total epochs trained by the end of each rung: epochs x reduction_factor^i."""
    return [settings.epochs * settings.reduction_factor**i for i in range(n_rungs)]


def planned_cost(n: int, settings: ProxySettings) -> int:
    """Student-epochs the selector spends on a trajectory of ``n`` checkpoints."""
    sizes = rung_sizes(n, settings.rungs, settings.reduction_factor)
    ends = rung_epochs(settings, len(sizes))
    return len(settings.seeds) * sum(k * (e - prev) for k, e, prev in zip(sizes, ends, [0, *ends[:-1]]))


def proxy_hash(cfg: ExperimentConfig, selector: str, checkpoints: Iterable[tuple[int, str]]) -> str:
    """What fixes a proxy result: its settings, the checkpoints (sha256), the data and the student recipe."""
    return config_hash(
        {
            "settings": proxy_settings(cfg, selector).to_json(),
            "checkpoints": [[int(e), str(h)] for e, h in checkpoints],
            "data": data_key(cfg),
            "batch_size": cfg.student.batch_size or cfg.data.batch_size,
            "optim": to_dict(cfg.student.optim),
            "reduce": str(cfg.distill.ensemble_reduce),
            "bootstrap": int(cfg.scoring.proxy.bootstrap),
            "precision": str(cfg.precision),
        }
    )


def proxy_fresh(cfg: ExperimentConfig, scores: dict) -> bool:
    """Does a scores file hold every proxy selector the config asks for, with matching settings?"""
    checkpoints = list(checkpoint_shas(scores).items())
    held = proxy_entries(scores)
    return all((held.get(s) or {}).get("hash") == proxy_hash(cfg, s, checkpoints) for s in proxy_selectors(cfg))


# ----------------------------------------------------------------------------- the pack


@dataclass(frozen=True)
class _Candidate:
    """One proxy student (a ``Learner`` of the pack): its candidate checkpoint and proxy seed."""

    epoch: int
    seed: int
    temperature: float
    kd_weight: float
    teachers: tuple[TeacherRef, ...]


@dataclass
class _Context:
    """What every rung of one selector on one trajectory shares."""

    cfg: ExperimentConfig
    settings: ProxySettings
    trajectory: str
    splits: DataSplits  # on ``device``
    cache: LogitCache
    device: torch.device
    schedule_epochs: int
    setup_s: float = 0.0  # data and teacher logits, charged in full to every selector (as if it ran alone)


def _members(ctx: _Context, candidates: list[int]) -> list[_Candidate]:
    """Candidate-major: every candidate with every proxy seed."""
    s = ctx.settings
    return [
        _Candidate(e, seed, s.temperature, s.kd_weight, (TeacherRef(ctx.trajectory, e),))
        for e in candidates
        for seed in s.seeds
    ]


def _build(ctx: _Context, members: list[_Candidate]) -> StudentPack:
    """A pack of fresh proxy students (each initialized from its seed alone, as when trained alone)
    whose LR schedule spans the last rung."""
    return build_pack(ctx.cfg, ctx.settings.student, members, ctx.splits, ctx.cache, ctx.device, ctx.schedule_epochs)


def _val_correct(pack: StudentPack) -> Tensor:
    """``[members, n_val]``: which validation rows each member classifies right (CPU bool)."""
    logits, y = evaluate(pack, "val")
    return logits.argmax(-1) == y[None]


# ----------------------------------------------------------------------------- successive halving


def pick_confidence(correct: np.ndarray, epochs: list[int], draws: int, seed: int) -> dict[str, float]:
    """``{epoch: P(it wins)}`` over the candidates ``epochs`` (ascending) of ``correct`` ``[K, S, n]``
    (right/wrong per candidate, seed and validation row): a paired bootstrap of the rows (and seeds)."""
    k, s, n = correct.shape
    rng = np.random.default_rng(seed)
    rows = fold_weights(rng, draws, n)
    seeds = fold_weights(rng, draws, s) if s > 1 else np.ones((draws, 1))
    acc = np.einsum("ksn,bs,bn->bk", correct.astype(np.float64), seeds, rows)
    return summarize_draws(argmax_earliest(acc, TIE_DECIMALS), epochs)


def _rung(
    ctx: _Context, pack: StudentPack, index: int, start: int, end: int, progress: Progress
) -> tuple[dict, np.ndarray]:
    """Train the pack from epoch ``start`` to ``end`` and judge it on validation: the rung's record
    and its right/wrong array ``[candidates, seeds, n_val]``."""
    began = time.perf_counter()
    for epoch in range(start + 1, end + 1):
        train_epoch(pack, epoch, f"[proxy {ctx.settings.selector}] {ctx.trajectory}")
        progress.update(len(pack.members))
    correct = _val_correct(pack).cpu().numpy()
    candidates = list(dict.fromkeys(m.epoch for m in pack.members))
    per_seed = {e: [float(correct[j].mean()) for j, m in enumerate(pack.members) if m.epoch == e] for e in candidates}
    record = {
        "rung": index,
        "epochs": end,
        "candidates": candidates,
        "val_acc": {str(e): v for e, v in per_seed.items()},
        "val_acc_mean": {str(e): sum(v) / len(v) for e, v in per_seed.items()},
        "student_epochs": len(pack.members) * (end - start),
        "seconds": round(time.perf_counter() - began, 4),
    }
    return record, correct.reshape(len(candidates), len(ctx.settings.seeds), -1)


def successive_halving(ctx: _Context, candidates: list[int]) -> tuple[list[dict], np.ndarray]:
    """Every rung's record (``kept``: the candidates that go on; the last rung's: its best) and the
    last rung's right/wrong array (module doc)."""
    s = ctx.settings
    sizes = rung_sizes(len(candidates), s.rungs, s.reduction_factor)
    ends = rung_epochs(s, len(sizes))
    total = planned_cost(len(candidates), s)
    rungs: list[dict] = []
    pack, start, correct = _build(ctx, _members(ctx, candidates)), 0, np.zeros((1, 1, 0))
    with Progress(
        total, f"[proxy {s.selector}] {ctx.trajectory}", unit="student-epoch", log=logger, final_line=True
    ) as progress:
        for i, end in enumerate(ends):
            if i > 0:
                alive = set(rungs[-1]["kept"])
                pack = shrink(pack, [j for j, m in enumerate(pack.members) if m.epoch in alive])
            record, correct = _rung(ctx, pack, i, start, end, progress)
            keep = sizes[i + 1] if i + 1 < len(sizes) else 1
            record["kept"] = sorted(rank_by_mean({int(e): v for e, v in record["val_acc_mean"].items()})[:keep])
            rungs.append(record)
            logger.info(
                f"[proxy {s.selector}] {ctx.trajectory} rung {i}: {len(record['candidates'])} candidates x "
                f"{len(s.seeds)} seed(s) at {end} epochs, val acc "
                + " ".join(f"e{e} {100 * v:.2f}%" for e, v in record["val_acc_mean"].items())
                + f" -> keep {record['kept']}"
            )
            start = end
    return rungs, correct


def run_proxy(ctx: _Context, candidates: list[int], digest: str) -> dict:
    """One proxy selector on one trajectory: successive halving over ``candidates`` (ascending
    epochs); the scores file's ``proxy[selector]`` entry (module doc)."""
    s, began = ctx.settings, time.perf_counter()
    if len(candidates) > 1:
        rungs, correct = successive_halving(ctx, candidates)
        last = rungs[-1]
        pick = last["kept"][0]
        conf = pick_confidence(correct, last["candidates"], int(ctx.cfg.scoring.proxy.bootstrap), s.seeds[0])
    else:  # nothing to choose between: no student is trained
        rungs, pick, conf = [], candidates[0], {str(candidates[0]): 1.0}
    student_epochs = sum(r["student_epochs"] for r in rungs)
    seconds = round(time.perf_counter() - began + ctx.setup_s, 4)
    return {
        "selector": s.selector,
        "settings": s.to_json(),
        "hash": digest,
        "candidates": list(candidates),
        "rungs": rungs,
        "pick": int(pick),
        "confidence": {str(e): conf.get(str(e), 0.0) for e in candidates},
        "cost": {"student_epochs": student_epochs, "seconds": seconds, "setup_s": ctx.setup_s},
        "device": str(ctx.device),
        "num_threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------- per trajectory


def _context(
    cfg: ExperimentConfig,
    store: Any,
    trajectory: str,
    candidates: list[int],
    settings: ProxySettings,
    device: torch.device,
    shared: dict,
) -> _Context:
    """The context of one selector: the data and logit cache are loaded once per trajectory
    (``shared``), and the teacher logits of every candidate are made sure of (timed: set-up)."""
    if "splits" not in shared:
        began = time.perf_counter()
        shared["splits"] = load_splits(cfg, device)
        shared["cache"] = LogitCache(cfg, store, shared["splits"], device)
        for e in candidates:  # every cacheable split computed once per checkpoint (and kept for the sweep), else read
            shared["cache"].logits(TeacherRef(trajectory, e), "val")
        shared["setup_s"] = round(time.perf_counter() - began, 4)
    sizes = rung_sizes(len(candidates), settings.rungs, settings.reduction_factor)
    return _Context(
        cfg,
        settings,
        trajectory,
        shared["splits"],
        shared["cache"],
        device,
        rung_epochs(settings, max(len(sizes), 1))[-1],
        shared["setup_s"],
    )


def _previous(store: Any, name: str) -> dict[str, dict]:
    """The proxy results of the trajectory's previous scores file ({} without a verified one)."""
    if not has_scores(store, name):
        return {}
    try:
        scores = read_scores(store, name)
    except (ScoresError, AttributeError, TypeError):
        return {}
    return {} if pick_problem(scores) else proxy_entries(scores)  # a forged pick is trained again, not reused


def proxy_results(
    cfg: ExperimentConfig, store: Any, trajectory: str, checkpoints: list[tuple[int, str]], device: torch.device
) -> dict[str, dict]:
    """Every proxy selector the config asks for on one trajectory (``checkpoints``: (epoch,
    sha256) ascending): reused from the previous scores file when its hash matches, else trained."""
    previous, shared, out = _previous(store, trajectory), {}, {}
    candidates = [int(e) for e, _ in checkpoints]
    for selector in proxy_selectors(cfg):
        digest = proxy_hash(cfg, selector, checkpoints)
        old = previous.get(selector)
        if isinstance(old, dict) and old.get("hash") == digest:
            logger.info(
                f"[proxy {selector}] {trajectory}: settings and checkpoints unchanged; reusing pick e{old.get('pick')}"
            )
            out[selector] = old
            continue
        settings = proxy_settings(cfg, selector)
        ctx = _context(cfg, store, trajectory, candidates, settings, device, shared)
        out[selector] = run_proxy(ctx, candidates, digest)
        c = out[selector]["cost"]
        logger.info(
            f"[proxy {selector}] {trajectory}: pick e{out[selector]['pick']} "
            f"(p={out[selector]['confidence'][str(out[selector]['pick'])]:.2f}); "
            f"{c['student_epochs']} student-epochs, {c['seconds']:.1f}s"
        )
    return out


# ----------------------------------------------------------------------------- into the scores file


def checkpoint_scores(result: dict, epochs: list[int]) -> dict[str, list]:
    """Per checkpoint: the last rung it reached, its mean validation accuracy there and the score
    ``rung + accuracy`` (the successive-halving order: later rung first, then accuracy), which
    ranks checkpoints for ``selected_ensemble:K`` and the selector evaluation's rank correlation."""
    reached: dict[int, tuple[int, float]] = {}
    for r in result.get("rungs", []):
        for e, acc in r["val_acc_mean"].items():
            reached[int(e)] = (int(r["rung"]), float(acc))
    if not reached:  # a single checkpoint: nothing was trained
        reached = {int(result["pick"]): (0, 1.0)}
    rung = [reached.get(e, (math.nan, math.nan))[0] for e in epochs]
    acc = [reached.get(e, (math.nan, math.nan))[1] for e in epochs]
    return {"score": [r + a for r, a in zip(rung, acc)], "rung": rung, "val_acc": acc}


def proxy_pick(result: dict) -> dict[str, Any]:
    """The scores file's ``selected[selector]`` entry of a proxy result."""
    pick = int(result["pick"])
    conf = (result.get("confidence") or {}).get(str(pick))
    scores = checkpoint_scores(result, [pick])
    no_teacher = float((result.get("settings") or {}).get("kd_weight", 1.0)) == 0.0  # students never saw a checkpoint
    return {
        "epoch": pick,
        "score": scores["score"][0],
        "degenerate": no_teacher,
        "fallback": None,
        "confidence": conf,
        "unstable": None if conf is None else conf < UNSTABLE_BELOW,
    }
