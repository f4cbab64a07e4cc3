"""Ray layer: only Ray code, each module named after the core stage it wraps.

| core stage (runs without Ray)   | its Ray wrapper here                                       |
|---------------------------------|------------------------------------------------------------|
| ``harness/teachers.py``         | ``cluster/teachers.py``: one actor per trajectory, restarts, progress board |
| ``harness/scoring/``            | ``cluster/scoring.py``: the scorer actor, scores as trajectories finish |
| ``harness/sweep.py`` (+ distill)| ``cluster/sweep.py``: the Tune experiment, one trial per student |
| ``harness/pipeline.py``         | ``cluster/pipeline.py``: the stages on Ray, teachers and scoring overlapped |

``connection`` joins ``cluster.address`` / ``RAY_ADDRESS`` or starts a local cluster, sizes
actors and checks shared storage; ``sweep_progress`` is the driver's Tune callback. Nothing here
imports Ray at module import time: ``ray`` is imported inside the functions that use it.
"""

from harness.cluster.errors import ClusterError, StorageNotSharedError, SweepError

__all__ = ["ClusterError", "StorageNotSharedError", "SweepError"]
