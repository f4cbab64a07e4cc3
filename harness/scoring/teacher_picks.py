"""The teacher choices ``selected:<selector>`` / ``selected_ensemble:K``: picks read from a
verified scores file.

A scores file is writable by anyone who can write ``storage``; a forged pick would make every
``selected:*`` student train from it. So before a pick is used (and before ``scores_fresh``
calls a file fresh) ``pick_problem`` checks that every pick follows from the values the file
records, by the rules of ``selection.py``:

- an MI selector's normalized scores are recomputed from the recorded raw estimates (the file's
  normalization and weights) and must equal the recorded ones; its pick must be ``select_single``
  of them, its ``degenerate`` flag ``is_degenerate`` of them, and a ``fallback`` pick that of a
  non-degenerate selector of the file;
- a proxy selector's pick must be its record's ``pick`` and the best candidate of its recorded
  last rung (mean validation accuracy, each mean that of its per-seed values);
- every stored ensemble pick must be ``select_ensemble`` on the ensemble selector's recorded scores.

A file edited by hand fails its digest first (``scores_file.read_scores``); one edited together
with its digest is caught here unless the recorded values were forged consistently too.
Refusals are one line naming the file and saying to re-run ``ckd score``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .scores_file import (
    ScoresError,
    checkpoint_shas,
    checkpoints,
    ensemble_picks,
    picks,
    proxy_entries,
    read_scores,
    scores_path,
)
from .selection import (
    SELECTORS,
    is_degenerate,
    list_selectors,
    rank_by_mean,
    select_ensemble,
    select_single,
    selector_scores,
)


def pick_problem(scores: dict) -> str | None:
    """Why the picks of a scores file do not follow from its recorded values (None: they do)."""
    try:
        scored = checkpoints(scores)
        epochs = [int(c.epoch) for c in scored]
        for name, pick in picks(scores).items():
            problem = _single_problem(scores, scored, epochs, name, pick)
            if problem:
                return problem
        return _ensemble_problem(scores, scored, epochs)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        return f"its picks or recorded values are malformed ({type(e).__name__}: {str(e)[:80]})"


def _single_problem(scores: dict, scored: list, epochs: list[int], name: str, pick: Any) -> str | None:
    """Why ``selected[name]`` does not follow from the file's values (None: it does)."""
    selector = SELECTORS.get(name)
    if selector is None:
        return f"it holds a pick of the unknown selector {name!r}"
    if selector.kind == "proxy":
        expected, problem = _proxy_pick(scores, name)
        if problem:
            return problem
        degenerate = float(proxy_entries(scores)[name]["settings"]["kd_weight"]) == 0.0
    else:
        weights = scores.get("weights") or {}
        values = selector_scores(
            [c.raw for c in scored],
            selector,
            scores.get("normalization", "minmax"),
            float(weights.get("x", 1.0)),
            float(weights.get("y", 1.0)),
        )["score"]
        if not _same_values(values, [c.normalized[name]["score"] for c in scored]):
            return f"the scores of selector {name!r} do not follow from its recorded estimates"
        expected, degenerate = select_single(epochs, values), is_degenerate(values)
    if bool(pick.degenerate) != degenerate:
        return f"selected[{name!r}] says degenerate={pick.degenerate}, but its recorded scores say {degenerate}"
    if pick.fallback is not None:
        fallback = picks(scores).get(pick.fallback)
        if not degenerate or fallback is None or fallback.degenerate or fallback.epoch != pick.epoch:
            return (
                f"selected[{name!r}] takes epoch {pick.epoch} from fallback {pick.fallback!r}, which does not pick it"
            )
    elif pick.epoch != expected:
        return f"selected[{name!r}] picks epoch {pick.epoch}, but its recorded scores pick epoch {expected}"
    return None


def _proxy_pick(scores: dict, name: str) -> tuple[int | None, str | None]:
    """The pick a proxy selector's record gives (its last rung's best), or why it gives none."""
    record = proxy_entries(scores).get(name)
    if not isinstance(record, dict):
        return None, f"selected[{name!r}] has no proxy record to follow from"
    rungs, candidates = record["rungs"], [int(e) for e in record["candidates"]]
    if rungs:
        last = rungs[-1]
        means = {int(e): float(v) for e, v in last["val_acc_mean"].items()}
        per_seed = {int(e): sum(v) / len(v) for e, v in last["val_acc"].items()}
        if not _same_values([means[e] for e in sorted(means)], [per_seed.get(e) for e in sorted(means)]):
            return None, f"the last rung of proxy selector {name!r} has means that are not those of its seeds"
        expected = rank_by_mean(means)[0]
    elif len(candidates) == 1:
        expected = candidates[0]
    else:
        return None, f"proxy selector {name!r} records no rung to pick from {len(candidates)} candidates"
    if int(record["pick"]) != expected:
        return None, f"proxy[{name!r}] picks epoch {record['pick']}, but its last rung picks epoch {expected}"
    return expected, None


def _ensemble_problem(scores: dict, scored: list, epochs: list[int]) -> str | None:
    """Why a stored ensemble pick is not the greedy rule on the recorded scores (None: none is)."""
    ens = scores.get("selected_ensemble") or {}
    stored = ensemble_picks(scores) if ens.get("by_k") else {}
    if not stored:
        return None
    values = [c.normalized[ens["selector"]]["score"] for c in scored]
    for k, members in stored.items():
        expected, _ = select_ensemble(epochs, values, k, float(ens["min_gap_epochs"]))
        if [int(e) for e in members] != expected:
            return f"selected_ensemble K={k} holds epochs {members}, but the recorded scores pick {expected}"
    return None


def _same_values(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Equal lists of floats (to 1e-9 relative; NaN equals NaN; None only equals None)."""

    def same(x: Any, y: Any) -> bool:
        if x is None or y is None:
            return x is y
        x, y = float(x), float(y)
        return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)

    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def verified_scores(store: Any, trajectory_name: str) -> dict:
    """The trajectory's scores file (``read_scores``: schema and digest checked) whose picks
    follow from its recorded values; ``ScoresError`` with one line naming the file otherwise."""
    scores = read_scores(store, trajectory_name)
    problem = pick_problem(scores)
    if problem:
        raise ScoresError(
            f"scores file {scores_path(store, trajectory_name)}: {problem}, so it is not trusted; "
            "re-run `ckd score CONFIG` to rescore it"
        )
    return scores


def _check_fresh(store: Any, trajectory_name: str, scores: dict) -> None:
    """Scores must describe the checkpoints now on disk (same epochs, same sha256)."""
    traj = store.trajectory(trajectory_name)
    if not traj.exists():
        return  # resolution of the teacher itself will say that the trajectory is missing
    on_disk = {c["epoch"]: c.get("sha256") for c in traj.checkpoints()}
    scored = checkpoint_shas(scores)
    if on_disk != scored:
        changed = sorted(e for e in set(on_disk) | set(scored) if on_disk.get(e) != scored.get(e))
        raise ScoresError(
            f"MI scores of trajectory {trajectory_name} are stale (checkpoints changed at epochs {changed}); "
            "run `ckd score CONFIG` first"
        )


def _require_selector(scores: dict, trajectory_name: str, selector: str) -> None:
    if selector in picks(scores):
        return
    if selector not in SELECTORS:
        raise ScoresError(f"unknown selector {selector!r}; known: {', '.join(list_selectors())}")
    if SELECTORS[selector].kind == "proxy":
        raise ScoresError(
            f"selector {selector!r} was not computed for trajectory {trajectory_name}: it trains proxy students, so it "
            f"runs only when asked; add it to scoring.proxy.selectors (or name selected:{selector} in "
            "sweep.teacher_choices) and run `ckd score CONFIG` first"
        )
    needs = SELECTORS[selector].estimators
    raise ScoresError(
        f"selector {selector!r} was not computed for trajectory {trajectory_name}: it needs the estimators "
        f"{needs}, but the scores hold {sorted(scores.get('estimators', {}))}; add them to scoring.estimators "
        "and run `ckd score CONFIG` first"
    )


def _require_usable(scores: dict, trajectory_name: str, selector: str) -> None:
    """A degenerate selector (same score for every checkpoint) cannot select, unless it has a fallback."""
    if not picks(scores)[selector].usable:
        raise ScoresError(
            f"selector {selector!r} is degenerate for trajectory {trajectory_name}: its score is the same for "
            "every checkpoint (a saturated estimator), so it cannot select a teacher; choose another selector, or "
            "set scoring.degenerate_fallback=<selector> (e.g. accuracy) and run `ckd score CONFIG` first"
        )


def read_selected(store: Any, trajectory_name: str, selector: str) -> int:
    """Epoch T* chosen by ``selector`` for the trajectory (teacher choice ``selected:<selector>``).

    A degenerate selector raises ``ScoresError`` unless a fallback was configured when scoring
    (its pick is then the fallback selector's); an unstable pick resolves (it is only flagged)."""
    scores = verified_scores(store, trajectory_name)
    _require_selector(scores, trajectory_name, selector)
    _require_usable(scores, trajectory_name, selector)
    _check_fresh(store, trajectory_name, scores)
    return int(picks(scores)[selector].epoch)


def read_selected_ensemble(store: Any, trajectory_name: str, k: int, selector: str | None = None) -> list[int]:
    """Epochs of the K-checkpoint ensemble (teacher choice ``selected_ensemble:K``).

    Uses the pick stored for K when there is one, else runs the same greedy rule on the stored
    normalized scores (so any K up to the number of checkpoints works without rescoring).
    """
    scores = verified_scores(store, trajectory_name)
    ens = scores["selected_ensemble"]
    selector = selector or ens["selector"]
    if selector is None:
        raise ScoresError(f"no selector was computed for trajectory {trajectory_name}; run `ckd score CONFIG` first")
    _require_selector(scores, trajectory_name, selector)
    if picks(scores)[selector].degenerate:
        raise ScoresError(
            f"selector {selector!r} is degenerate for trajectory {trajectory_name} (same score for every checkpoint), "
            "so it cannot rank ensemble members; set scoring.ensemble_selector to another selector and "
            "run `ckd score CONFIG` first"
        )
    _check_fresh(store, trajectory_name, scores)
    stored = ensemble_picks(scores).get(int(k))
    if stored is not None and selector == ens["selector"]:
        return [int(e) for e in stored]
    scored = checkpoints(scores)
    epochs = [c.epoch for c in scored]
    values = [c.normalized[selector]["score"] for c in scored]
    try:
        members, _ = select_ensemble(epochs, values, k, ens["min_gap_epochs"])
    except ValueError as e:
        raise ScoresError(f"selected_ensemble:{k} for trajectory {trajectory_name}: {e}") from None
    return members
