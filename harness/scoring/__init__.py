"""MI scorer: estimate I(X;F) and I(Y;F) per checkpoint, normalize, select teachers.

Modules, one concept each:

- ``base``: the estimator interface, its registry (``@register_estimator``), the scoring sample;
- ``recon``, ``accuracy``, ``ce_bound``, ``kde``, ``binning``: the estimators (formulas in each
  module's docstring);
- ``normalization``: per-trajectory normalization of a term over the checkpoints;
- ``selection``: selectors (``paper``, ``ce``, ``kde``, ``binning``, ``accuracy``; ``proxy*``), the single
  pick T* (Algorithm 1), the K-checkpoint ensemble pick, and the readers behind the teacher
  choices ``selected:<selector>`` / ``selected_ensemble:K``;
- ``proxy``: the student-aware selectors (``proxy``, ``proxy_small``, ``proxy_large``): short
  distillations from every checkpoint, successive halving, pick by validation accuracy;
- ``runner``: ``run_scoring(cfg)`` (``ckd score``), ``score_trajectory`` (shared pass over all
  checkpoints), ``scores_fresh`` (is a trajectory's scores file up to date?) and
  ``information_plane`` (table for the Fig. 4/7 plots).
"""

from __future__ import annotations

from . import accuracy, binning, ce_bound, kde, recon  # noqa: F401  (register the estimators)
from .base import (
    ESTIMATORS,
    CheckpointFeatures,
    Estimator,
    ScoringData,
    ScoringError,
    TensorConvSource,
    build_estimator,
    list_estimators,
    register_estimator,
)
from .normalization import list_normalizations, normalize, register_normalization
from .runner import build_scoring_data, information_plane, run_scoring, score_trajectory, scores_fresh
from .selection import (
    SELECTORS,
    ScoresError,
    list_selectors,
    read_scores,
    read_selected,
    read_selected_ensemble,
    select_ensemble,
    select_single,
)

__all__ = [
    "ESTIMATORS",
    "SELECTORS",
    "CheckpointFeatures",
    "Estimator",
    "ScoresError",
    "ScoringData",
    "ScoringError",
    "TensorConvSource",
    "build_estimator",
    "build_scoring_data",
    "information_plane",
    "list_estimators",
    "list_normalizations",
    "list_selectors",
    "normalize",
    "read_scores",
    "read_selected",
    "read_selected_ensemble",
    "register_estimator",
    "register_normalization",
    "run_scoring",
    "score_trajectory",
    "scores_fresh",
    "select_ensemble",
    "select_single",
]
