"""Per-trajectory normalization of one score term over the checkpoints (pluggable).

Every function maps the raw values v_1..v_K of one term (one per checkpoint, oriented so that
higher = more information) to comparable values. NaN stays NaN and is ignored by the others; the
selection treats it as the worst value.

| name   | formula                                                 | constant term |
|--------|---------------------------------------------------------|---------------|
| minmax | (v - min) / (max - min), in [0, 1]  (paper, default)    | all 0         |
| zscore | (v - mean) / std                                        | all 0         |
| rank   | (rank - 1) / (K - 1), ties share their mean rank        | all 0.5       |
| none   | v                                                       | v             |
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from harness.registry import Registry

Normalizer = Callable[[Sequence[float]], list[float]]
NORMALIZATIONS: Registry[Normalizer] = Registry("normalization")
register_normalization = NORMALIZATIONS.register


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _nan_if_missing(v: float | None) -> bool:
    return v is None or not math.isfinite(v)


@register_normalization("minmax")
def minmax(values: Sequence[float]) -> list[float]:
    ok = _finite(values)
    if not ok:
        return [math.nan] * len(values)
    lo, hi = min(ok), max(ok)
    span = hi - lo
    return [
        math.nan if _nan_if_missing(v) else (0.0 if span <= 1e-12 * max(1.0, abs(hi)) else (v - lo) / span)
        for v in values
    ]


@register_normalization("zscore")
def zscore(values: Sequence[float]) -> list[float]:
    ok = _finite(values)
    if not ok:
        return [math.nan] * len(values)
    mean = sum(ok) / len(ok)
    std = math.sqrt(sum((v - mean) ** 2 for v in ok) / len(ok))
    return [
        math.nan if _nan_if_missing(v) else (0.0 if std <= 1e-12 * max(1.0, abs(mean)) else (v - mean) / std)
        for v in values
    ]


@register_normalization("rank")
def rank(values: Sequence[float]) -> list[float]:
    ok = sorted(_finite(values))
    if len(ok) < 2:
        return [math.nan if _nan_if_missing(v) else 0.0 for v in values]
    mean_rank: dict[float, float] = {}
    for v in set(ok):
        positions = [i for i, w in enumerate(ok) if w == v]
        mean_rank[v] = sum(positions) / len(positions)
    return [math.nan if _nan_if_missing(v) else mean_rank[float(v)] / (len(ok) - 1) for v in values]


@register_normalization("none")
def identity(values: Sequence[float]) -> list[float]:
    return [math.nan if _nan_if_missing(v) else float(v) for v in values]


def normalize(values: Sequence[float], method: str = "minmax") -> list[float]:
    """Normalize one term over a trajectory's checkpoints with the named method."""
    return NORMALIZATIONS.get(method)(values)


def list_normalizations() -> list[str]:
    return NORMALIZATIONS.names()
