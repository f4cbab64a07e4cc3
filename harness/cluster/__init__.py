"""Ray layer: connection, trajectory actors, the scorer actor, the Tune sweep, the pipeline.

Nothing here imports Ray at module import time: ``ray`` is imported inside the functions that
use it, so ``harness.cluster.pipeline`` also runs (``cluster.mode=local``, ``ckd ... --local``)
on machines that have torch but no Ray.

- ``connection``: ``connect(cfg)`` joins ``cluster.address`` / ``RAY_ADDRESS`` or starts a local
  cluster; per-actor resources; the shared-storage check on multi-node clusters.
- ``trajectories``: one Ray actor per teacher trajectory (restarted when it dies; the trajectory
  resumes from its last epoch) and the driver's progress table.
- ``scorer``: one scorer actor that holds the scoring sample once and scores trajectories as
  they finish.
- ``sweep``: the Tune grid over teacher choices x temperature x kd_weight x student x seed; the
  trainable reports every epoch with a checkpoint; ``Tuner.restore`` on re-runs.
- ``pipeline``: the stages behind ``ckd teachers|score|sweep|run`` (Ray or in-process).
"""
from harness.cluster.errors import ClusterError, StorageNotSharedError, SweepError

__all__ = ["ClusterError", "StorageNotSharedError", "SweepError"]
