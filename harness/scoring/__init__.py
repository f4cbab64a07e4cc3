"""MI scorer: estimate I(X;F) and I(Y;F) per checkpoint, normalize, select teachers.

This package's face is its registries (what ``registry.NAME_SOURCES`` lists): the estimators,
the normalizations and the selectors. The stage and the files are imported from their modules,
one concept each:

- ``base``: the estimator interface, its registry (``@register_estimator``), the scoring sample type;
- ``ridge`` (closed-form linear decoder, the default I(X;F) term), ``recon`` (the paper's trained
  decoder, with ``recon_decoder``, ``recon_training``; ``fold_stats``: their per-fold sums),
  ``accuracy``, ``ce_bound``, ``kde``, ``binning``: the estimators (formulas in each module's docstring);
- ``normalization``: per-trajectory normalization of a term over the checkpoints;
- ``selection``: selectors (``paper``, ``paper_recon``, ``ce``, ``kde``, ``binning``, ``accuracy``;
  ``proxy*``), the single pick T* (Algorithm 1), the K-checkpoint ensemble pick;
- ``teacher_picks``: ``read_selected`` / ``read_selected_ensemble`` behind the teacher choices
  ``selected:<selector>`` / ``selected_ensemble:K``, from a scores file whose picks are verified;
- ``proxy``: the student-aware selectors (``proxy``, ``proxy_small``, ``proxy_large``): short
  distillations from every checkpoint, successive halving, pick by validation accuracy;
- ``scores_file``: the scores file (path, schema, read, write, accessors);
- the stage ``ckd score``: ``runner`` (``run_scoring``, ``score_trajectory``), ``sample`` (the
  scoring sample), ``plan`` (what is reused), ``features`` (the shared feature pass),
  ``assemble`` (selection assembly), ``freshness`` (``scores_fresh``), ``plane``
  (``information_plane``, the table for the Fig. 4/7 plots).
"""

from __future__ import annotations

from . import accuracy, binning, ce_bound, kde, recon, ridge  # noqa: F401  (register the estimators)
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
from .selection import SELECTORS, list_selectors

__all__ = [
    "ESTIMATORS",
    "SELECTORS",
    "CheckpointFeatures",
    "Estimator",
    "ScoringData",
    "ScoringError",
    "TensorConvSource",
    "build_estimator",
    "list_estimators",
    "list_normalizations",
    "list_selectors",
    "normalize",
    "register_estimator",
    "register_normalization",
]
