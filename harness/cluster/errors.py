"""Errors of the cluster layer; each message says what to fix (no Ray import here)."""
from __future__ import annotations


class ClusterError(RuntimeError):
    """The cluster cannot do what the config asks (unreachable address, infeasible resources,
    an actor that died more often than ``cluster.max_actor_restarts``)."""


class StorageNotSharedError(ClusterError):
    """``storage`` is not visible at the same path from every node of a multi-node cluster."""


class SweepError(ClusterError):
    """Some sweep trials failed after ``sweep.max_failures`` retries."""
