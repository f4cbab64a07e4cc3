"""Selectors: which checkpoint(s) of a trajectory to distill from, given its MI scores.

A *selector* pairs an I(X;F) term with an I(Y;F) term (``estimator.key``, both oriented so
that higher = more information). Per trajectory each term is normalized over the checkpoints
(``normalization.py``, min-max by default) and the selection score of checkpoint e is

    score(e) = x_weight * norm_x(e) + y_weight * norm_y(e)            (weights default 1 : 1)

A selector is computed only when all its estimators are in ``scoring.estimators``.

| selector   | I(X;F) term        | I(Y;F) term         | meaning                                     |
|------------|--------------------|---------------------|---------------------------------------------|
| paper      | ridge.i_x          | accuracy.accuracy   | the paper's Algorithm 1 with a closed-form  |
|            |                    |                     | linear decoder for I(X;F) (``ridge.py``)    |
| paper_recon| recon.neg_loss     | accuracy.accuracy   | Algorithm 1 exactly: the paper's trained    |
|            |                    |                     | conv decoder (add ``recon`` to estimators)  |
| ce         | ridge.i_x          | ce_bound.i_y        | Algorithm 1 with I(Y;F) >= H(Y) - CE        |
| kde        | kde.i_x            | kde.i_y_corrected   | KDE estimates of both; I(Y;F) minus its     |
|            |                    |                     | shuffled-label floor (Kolchinsky-Tracey)    |
| binning    | binning.i_x        | binning.i_y         | binned estimates of both                    |
| accuracy   | -                  | accuracy.accuracy   | baseline: best validation accuracy          |

**Student-aware selectors** (``kind="proxy"``; ``proxy.py``): ``proxy``, ``proxy_small`` and
``proxy_large`` distill short proxy students from every checkpoint (successive halving,
``scoring.proxy``; the variants scale the epochs of every rung by their ``budget``: 1/2, 1, 2)
and pick by the proxy students' validation accuracy. They use no estimator, so they are computed
only when asked: when named in ``scoring.proxy.selectors`` or by a ``selected:<it>`` choice of
the config, or as ``scoring.ensemble_selector`` / ``degenerate_fallback``.

**Single pick (Algorithm 1)**: T* = argmax_e score(e). Ties (scores equal to 9 decimals) go to
the earlier epoch. A selector whose score is the same for every checkpoint (a saturated
estimator, e.g. ``binning`` on a wide layer) is flagged ``degenerate`` in the scores file, and
``selected:<it>`` then fails with a message saying so, unless ``scoring.degenerate_fallback``
names a selector whose pick it takes instead (recorded as ``fallback``).

**Stability**: ``selection_stability`` resamples the replicates behind every term (paired
bootstrap, ``replicates.py``) and stores per selector the probability that each checkpoint is
T* (``selection_confidence``); the pick's own probability is ``selected[s]["confidence"]`` and a
pick below 0.5 is flagged ``unstable`` (it still resolves; the leaderboard and ``ckd score`` say
so). The bootstrap's spread of the normalized terms and score gives their error bars.

**Ensemble pick (our extension)**, K members from one trajectory, greedy: walk the checkpoints
in order of decreasing score (ties: earlier epoch first) and take each one that lies at least
``gap`` epochs from every member taken so far, until K are taken. ``gap`` starts at
``min_gap_fraction x epochs`` so that near-duplicate neighbours (which would add little
diversity) are not picked together; if fewer than K checkpoints satisfy it, the gap is halved
until they do (the gap used is recorded). The members are returned in epoch order. The score
used is the ``scoring.ensemble_selector``'s (default ``paper``; the first computed selector in
the table's order if that one is not available).

``picks.read_selected`` / ``picks.read_selected_ensemble`` resolve the teacher choices
``selected:<selector>`` and ``selected_ensemble:K`` from the trajectory's scores file, after
checking that its picks follow from its recorded values by the rules above.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .normalization import normalize
from .replicates import UNSTABLE_BELOW, argmax_earliest, fold_weights, normalize_rows, resampled_term, summarize_draws

TIE_DECIMALS = 9


@dataclass(frozen=True)
class Selector:
    name: str
    x: tuple[str, str] | None  # (estimator, key) of the I(X;F) term
    y: tuple[str, str] | None  # (estimator, key) of the I(Y;F) term
    description: str
    kind: str = "mi"  # mi: from the MI estimates; proxy: from proxy students (proxy.py)
    budget: float = 1.0  # proxy: scale of scoring.proxy.epochs (every rung's epochs)

    @property
    def estimators(self) -> list[str]:
        return sorted({t[0] for t in (self.x, self.y) if t is not None})

    def terms(self) -> list[tuple[str, tuple[str, str]]]:
        return [(axis, t) for axis, t in (("x", self.x), ("y", self.y)) if t is not None]

    def to_json(self) -> dict[str, Any]:
        out = {
            "x": None if self.x is None else ".".join(self.x),
            "y": None if self.y is None else ".".join(self.y),
            "estimators": self.estimators,
            "description": self.description,
        }
        return out if self.kind == "mi" else {**out, "kind": self.kind, "budget": self.budget}


SELECTORS: dict[str, Selector] = {
    s.name: s
    for s in (
        Selector(
            "paper",
            ("ridge", "i_x"),
            ("accuracy", "accuracy"),
            "paper Algorithm 1 with a closed-form linear decoder for I(X;F): ridge I(X;F) + validation accuracy",
        ),
        Selector(
            "paper_recon",
            ("recon", "neg_loss"),
            ("accuracy", "accuracy"),
            "paper Algorithm 1 with its trained conv decoder: -recon BCE + validation accuracy",
        ),
        Selector("ce", ("ridge", "i_x"), ("ce_bound", "i_y"), "ridge I(X;F) + (H(Y) - CE)"),
        Selector(
            "kde", ("kde", "i_x"), ("kde", "i_y_corrected"), "KDE I(X;T) + KDE I(T;Y) minus its shuffled-label floor"
        ),
        Selector("binning", ("binning", "i_x"), ("binning", "i_y"), "binned I(X;T) + binned I(T;Y)"),
        Selector("accuracy", None, ("accuracy", "accuracy"), "baseline: best validation accuracy"),
        Selector(
            "proxy_small",
            None,
            None,
            "student-aware: successive halving of proxy distillations, 1/2 the epochs",
            kind="proxy",
            budget=0.5,
        ),
        Selector(
            "proxy",
            None,
            None,
            "student-aware: successive halving of proxy distillations (scoring.proxy)",
            kind="proxy",
            budget=1.0,
        ),
        Selector(
            "proxy_large",
            None,
            None,
            "student-aware: successive halving of proxy distillations, 2x the epochs",
            kind="proxy",
            budget=2.0,
        ),
    )
}
PROXY_SELECTORS = [name for name, s in SELECTORS.items() if s.kind == "proxy"]


def list_selectors() -> list[str]:
    return list(SELECTORS)


def available_selectors(estimators: Iterable[str]) -> list[str]:
    """MI selectors whose estimators are all among ``estimators``, in table order (proxy
    selectors need no estimator: ``proxy.proxy_selectors`` says when they run)."""
    have = set(estimators)
    return [name for name, s in SELECTORS.items() if s.kind == "mi" and set(s.estimators) <= have]


def _tie_key(score: float, epoch: int) -> tuple[float, int]:
    """Sort key: higher score first, NaN last, equal scores (to TIE_DECIMALS) by earlier epoch."""
    value = -math.inf if score is None or not math.isfinite(score) else round(score, TIE_DECIMALS)
    return (-value, epoch)


def selector_scores(
    raw: Sequence[dict[str, dict[str, float]]],
    selector: Selector,
    normalization: str = "minmax",
    x_weight: float = 1.0,
    y_weight: float = 1.0,
) -> dict[str, list[float]]:
    """Normalized terms and the selection score per checkpoint.

    ``raw[i]`` is checkpoint i's ``{estimator: {key: value}}``. Returns ``{"x": [...], "y":
    [...], "score": [...]}`` (``x``/``y`` only for the terms the selector has). A selector with a
    single term scores by that term alone (the weights do not apply).
    """
    out: dict[str, list[float]] = {}
    weights = {"x": x_weight, "y": y_weight}
    terms = selector.terms()
    for axis, (est, key) in terms:
        values = [r.get(est, {}).get(key, math.nan) for r in raw]
        out[axis] = normalize(values, normalization)
    if len(terms) == 1:
        out["score"] = list(out[terms[0][0]])
    else:
        out["score"] = [sum(weights[a] * out[a][i] for a, _ in terms) for i in range(len(raw))]
    return out


def is_degenerate(scores: Sequence[float]) -> bool:
    """True when every checkpoint has the same score (to 9 decimals): the pick carries no signal."""
    finite = {round(v, TIE_DECIMALS) for v in scores if v is not None and math.isfinite(v)}
    return len(finite) <= 1


def select_single(epochs: Sequence[int], scores: Sequence[float]) -> int:
    """T* = argmax score; ties (to 9 decimals) go to the earlier epoch."""
    if not epochs:
        raise ValueError("no checkpoints to select from")
    return min(zip(scores, epochs), key=lambda se: _tie_key(se[0], se[1]))[1]


def _term_arrays(
    raw: Sequence[dict[str, dict[str, float]]], reps: Sequence[dict[str, dict[str, Any]]], est: str, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """A term's reported values ``[K]`` and replicates ``[K, S, F]`` (zeros where a checkpoint has
    none, e.g. a reused result without replicates: it then adds no noise)."""
    point = np.array([r.get(est, {}).get(key, math.nan) for r in raw], dtype=np.float64)
    cells = [rep.get(est, {}).get(key) for rep in reps]
    shape = next((np.shape(c) for c in cells if c is not None and np.ndim(c) == 2), (1, 1))
    arr = np.stack(
        [np.asarray(c, dtype=np.float64) if c is not None and np.shape(c) == shape else np.zeros(shape) for c in cells]
    )
    return point, np.nan_to_num(arr)


def _term_draws(
    raw: Sequence[dict[str, dict[str, float]]],
    reps: Sequence[dict[str, dict[str, Any]]],
    terms: set[tuple[str, str]],
    draws: int,
    rng: np.random.Generator,
) -> dict[tuple[str, str], np.ndarray]:
    """``[B, K]`` bootstrap values of every term: one fold draw shared by all terms (the same
    validation rows), one seed draw per (estimator, number of seeds)."""
    arrays = {t: _term_arrays(raw, reps, *t) for t in sorted(terms)}
    n_folds = max((a.shape[2] for _, a in arrays.values()), default=1)
    folds = fold_weights(rng, draws, n_folds)
    seed_draws: dict[tuple[str, int], np.ndarray] = {}
    out = {}
    for (est, key), (point, arr) in arrays.items():
        if arr.shape[2] != n_folds:  # no fold replicates: spread its seed means over the folds
            arr = np.repeat(arr.mean(axis=2, keepdims=True), n_folds, axis=2)
        s = arr.shape[1]
        if (est, s) not in seed_draws:
            seed_draws[(est, s)] = fold_weights(rng, draws, s)
        out[(est, key)] = resampled_term(point, arr, seed_draws[(est, s)], folds)
    return out


def selection_stability(
    epochs: Sequence[int],
    raw: Sequence[dict[str, dict[str, float]]],
    reps: Sequence[dict[str, dict[str, Any]]],
    selectors: Sequence[str],
    normalization: str = "minmax",
    x_weight: float = 1.0,
    y_weight: float = 1.0,
    draws: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per selector: ``confidence`` {epoch: P(T* = epoch)} and the bootstrap standard deviations
    ``x_se`` / ``y_se`` / ``score_se`` (one per checkpoint) of its normalized terms and score."""
    terms = {t for s in selectors for _, t in SELECTORS[s].terms()}
    values = _term_draws(raw, reps, terms, draws, np.random.default_rng(seed))
    weights = {"x": x_weight, "y": y_weight}
    out = {}
    for name in selectors:
        sel_terms = SELECTORS[name].terms()
        norm = {axis: normalize_rows(values[t], normalization) for axis, t in sel_terms}
        if len(sel_terms) == 1:
            score = norm[sel_terms[0][0]]
        else:
            score = sum(weights[a] * norm[a] for a, _ in sel_terms)
        picks = argmax_earliest(score, TIE_DECIMALS)
        out[name] = {"confidence": summarize_draws(picks, epochs), "score_se": _sd(score)}
        out[name].update({f"{axis}_se": _sd(v) for axis, v in norm.items()})
    return out


def _sd(draws: np.ndarray) -> list[float]:
    """Per checkpoint (column) the standard deviation over draws (rows)."""
    return [float(v) for v in np.nanstd(draws, axis=0, ddof=1)]


def is_unstable(confidence: float) -> bool:
    """A pick that wins fewer than half of the resamples is not a selection."""
    return confidence < UNSTABLE_BELOW


def select_ensemble(epochs: Sequence[int], scores: Sequence[float], k: int, min_gap: float) -> tuple[list[int], float]:
    """Greedy K-member pick with a minimum epoch gap (module doc); returns (epochs, gap used)."""
    if k < 1:
        raise ValueError(f"ensemble size must be >= 1, got {k}")
    if k > len(epochs):
        raise ValueError(f"cannot pick {k} checkpoints from a trajectory with {len(epochs)}")
    order = sorted(zip(scores, epochs), key=lambda se: _tie_key(se[0], se[1]))
    gap = float(min_gap)
    while True:
        members: list[int] = []
        for _, e in order:
            if all(abs(e - m) >= gap for m in members):
                members.append(e)
                if len(members) == k:
                    return sorted(members), gap
        gap = gap / 2 if gap > 1 else 0.0  # distinct epochs are >= 1 apart, so 0 always works


def rank_by_mean(means: dict[int, float]) -> list[int]:
    """Candidates (epochs) by mean validation accuracy, best first; ties (to 9 decimals) go to the
    earlier epoch: how a proxy selector keeps candidates and picks T* from its last rung."""
    return sorted(means, key=lambda e: (-round(means[e], TIE_DECIMALS), e))
