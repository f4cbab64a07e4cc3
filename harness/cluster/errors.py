"""Errors of the cluster layer; each message says what to fix (Ray imported only when used)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ClusterError(RuntimeError):
    """The cluster cannot do what the config asks (unreachable address, infeasible resources,
    an actor that died more often than ``cluster.max_actor_restarts``)."""


class StorageNotSharedError(ClusterError):
    """``storage`` is not visible at the same path from every node of a multi-node cluster."""


class SweepError(ClusterError):
    """Some sweep trials failed after ``sweep.max_failures`` retries."""


def user_error(e: BaseException) -> BaseException:
    """The user-level exception inside a ``RayTaskError`` (StoreError, ConfigError, ...), else ``e``."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


def get_result(ref: Any, actor_died: Callable[[BaseException], ClusterError]) -> tuple[Any, BaseException | None]:
    """``ray.get(ref)`` as ``(value, None)``, or ``(None, error)``: ``actor_died(e)`` when the actor
    is gone for good, the user-level exception when the task raised one."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    try:
        return ray.get(ref), None
    except RayActorError as e:
        return None, actor_died(e)
    except RayTaskError as e:
        return None, user_error(e)
