"""Connect to (or start) the Ray cluster, size actors from the config, check shared storage.

``connect(cfg)``: ``cluster.address`` (else ``RAY_ADDRESS``) joins an existing cluster, after a
plain TCP probe so that a wrong address fails in seconds with a message, not after Ray's own
minutes of retries; without an address a local cluster starts with ``cluster.num_cpus`` /
``cluster.num_gpus``. One log line says what was found, including when there is no GPU and every
actor therefore runs with ``gpus=0``.

``actor_resources(cfg, kind, info)``: ``{"num_cpus", "num_gpus"}`` for a trajectory actor, the
scorer or a trial, from ``cluster.<kind>``; GPUs are dropped (and said so once) when the cluster
has none, and a request no node can ever satisfy fails at once instead of pending forever.

Unless ``-v``, Ray's and Tune's banners stay off the console (``quiet_ray``): the notice that
a local cluster uses token authentication, and Tune's boxed "Configuration for experiment",
"View detailed results" and TensorBoard hint (printed by its new output engine whatever
``RunConfig(verbose=0)`` says; ``RAY_AIR_NEW_OUTPUT=0`` selects the engine that honours it).
Warnings and errors of Ray and of the workers stay visible.

``check_shared_storage(cfg, info)``: on a multi-node cluster, a probe task on every node reads
a token the driver wrote under ``<storage>/<name>`` and writes one back; a node that cannot see
the driver's files (or whose files the driver cannot see) fails with a message naming it.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import OmegaConf

from harness.cluster.errors import ClusterError, StorageNotSharedError
from harness.config import ExperimentConfig
from harness.fileio import ROW_MAX_BYTES, StoredFileError, read_regular_text
from harness.logs import verbose
from harness.objects import ObjectPath, location, storage_location
from harness.progress import reset_stages

logger = logging.getLogger(__name__)
KINDS = ("trajectory", "trial", "scorer")


@dataclass
class ClusterInfo:
    """What ``connect`` found: where, how big, and whether this process started it."""

    address: str | None  # None: a local cluster started by this process
    started_here: bool
    num_cpus: float
    num_gpus: float
    nodes: list[dict] = field(default_factory=list)  # alive nodes: node_id, ip, cpus, gpus
    _gpu_note_done: bool = False

    @property
    def multi_node(self) -> bool:
        return len(self.nodes) > 1

    def describe(self) -> str:
        where = f"Ray cluster at {self.address}" if self.address else "local Ray cluster"
        if not self.started_here and self.address is None:
            where = "the Ray cluster this process is connected to"
        gpu = f"{self.num_gpus:g} GPUs" if self.num_gpus else "no GPUs (every actor and trial runs on CPU with gpus=0)"
        return f"[cluster] {where}: {len(self.nodes)} node(s), {self.num_cpus:g} CPUs, {gpu}"


def prepare_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """A copy of ``cfg`` whose paths are absolute, so that workers (other cwd, other nodes) and
    Tune trials (which may chdir) resolve ``storage`` and ``data.root`` to the same place."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)) if not OmegaConf.is_config(cfg) else cfg.copy()
    cfg.storage = str(storage_location(str(cfg.storage)).resolve())  # a URI stays a URI
    if cfg.data.root:
        cfg.data.root = str(Path(str(cfg.data.root)).expanduser().resolve())
    return cfg


def config_from_dict(data: dict):
    """Rebuild a (driver-validated) config in a worker from its plain-dict form. Actors get the
    dict, not the DictConfig: small constructor arguments are inlined in the actor's creation
    task instead of living in the object store, which keeps restarts safe (ray#53727)."""
    return OmegaConf.merge(OmegaConf.structured(ExperimentConfig), data)


def _probe_address(address: str, timeout: float, source: str = "cluster.address") -> None:
    """Fail fast (a TCP connect) when ``host:port`` / ``ray://host:port`` does not answer."""
    if address in ("auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ClusterError(
            f"cluster address {address!r} (cluster.address / RAY_ADDRESS) is not of the form host:port, "
            "ray://host:port or auto; fix it, or leave both unset to start a local cluster"
        )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(
            f"no Ray cluster answers at {address!r} (from {source}): "
            f"{e}. Start one there (`ray start --head --port={port}`), fix cluster.address / RAY_ADDRESS, "
            "or leave both unset to start a local cluster"
        ) from None


def cluster_info(address: str | None, started_here: bool) -> ClusterInfo:
    import ray

    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        nodes.append(
            {
                "node_id": n["NodeID"],
                "ip": n.get("NodeManagerAddress"),
                "cpus": float(res.get("CPU", 0.0)),
                "gpus": float(res.get("GPU", 0.0)),
            }
        )
    total = ray.cluster_resources()
    return ClusterInfo(address, started_here, float(total.get("CPU", 0.0)), float(total.get("GPU", 0.0)), nodes)


TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"
TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"
_QUIET_TAG = "CKD_SET_RAY_AIR_NEW_OUTPUT"


def _not_token_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(TOKEN_NOTICE)


def quiet_ray() -> None:
    """Keep Ray's token notice and Tune's banners off the console unless ``-v`` (see above).
    An explicit ``RAY_AIR_NEW_OUTPUT`` in the environment wins."""
    token_log = logging.getLogger(TOKEN_LOGGER)
    if verbose():
        token_log.removeFilter(_not_token_notice)
        if os.environ.get(_QUIET_TAG):  # set by an earlier quiet call in this process: undo
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
            os.environ.pop(_QUIET_TAG)
        return
    if "RAY_AIR_NEW_OUTPUT" not in os.environ:
        os.environ["RAY_AIR_NEW_OUTPUT"] = os.environ[_QUIET_TAG] = "0"
    # Tune warns when a driver step takes > 0.5 s (opening a pack's W&B runs does): only past 5 s here.
    # Its threshold is read when ray.tune is imported, so the class attribute is set as well.
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "5")
    from ray.tune.utils.util import warn_if_slow

    warn_if_slow.DEFAULT_THRESHOLD = max(warn_if_slow.DEFAULT_THRESHOLD, float(os.environ["TUNE_WARN_THRESHOLD_S"]))
    token_log.addFilter(_not_token_notice)  # a set: adding twice keeps one


def connect(cfg: ExperimentConfig) -> ClusterInfo:
    """Join the configured cluster or start a local one; returns what was found."""
    import ray

    quiet_ray()
    if ray.is_initialized():  # e.g. tests, or a notebook that called ray.init itself
        info = cluster_info(None, started_here=False)
    else:
        address = cfg.cluster.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            source = "cluster.address" if cfg.cluster.address else "RAY_ADDRESS"
            _probe_address(address, cfg.cluster.connect_timeout_s, source)
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=verbose())
            except Exception as e:  # ConnectionError, version mismatch, ...
                raise ClusterError(
                    f"could not join the Ray cluster at {address!r} (cluster.address / RAY_ADDRESS): "
                    f"{type(e).__name__}: {e}. Check the address and that the cluster runs the same Ray "
                    "and Python versions as this machine"
                ) from None
            info = cluster_info(address, started_here=False)
        else:
            ray.init(
                num_cpus=cfg.cluster.num_cpus,
                num_gpus=cfg.cluster.num_gpus,
                include_dashboard=False,
                logging_level=logging.WARNING,
                # workers log to their own files (logs/, trial folders); their raw stdout/stderr
                # (e.g. a trial worker's teardown at SIGTERM) reaches this console only with -v
                log_to_driver=verbose(),
            )
            info = cluster_info(None, started_here=True)
    logger.info(info.describe())
    return info


def disconnect(info: ClusterInfo | None) -> None:
    """Shut down the local cluster this process started (a joined cluster stays up)."""
    if info is not None and info.started_here:
        import ray

        ray.shutdown()


class ClusterSession:
    """The config made ready for workers (absolute paths) + a cluster joined only when first
    needed: a re-run whose work is all done never starts Ray. ``close()`` shuts down what it started."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = prepare_config(cfg)
        self._info: ClusterInfo | None = None
        reset_stages()  # the run's overall ETA counts this verb's stages only

    @property
    def info(self) -> ClusterInfo:
        if self._info is None:
            info = connect(self.cfg)
            try:
                check_shared_storage(self.cfg, info)
            except BaseException:
                disconnect(info)
                raise
            self._info = info
        return self._info

    @property
    def connected(self) -> bool:
        return self._info is not None

    def resources(self, kind: str) -> dict[str, float]:
        return actor_resources(self.cfg, kind, self.info)

    def close(self) -> None:
        disconnect(self._info)
        self._info = None

    def __enter__(self) -> ClusterSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def actor_resources(cfg: ExperimentConfig, kind: str, info: ClusterInfo) -> dict[str, float]:
    """Ray resources for one actor/trial of ``kind`` (trajectory | trial | scorer)."""
    res = cfg.cluster[kind]
    cpus, gpus = float(res.cpus), float(res.gpus)
    if gpus > 0 and info.num_gpus == 0:
        if not info._gpu_note_done:
            logger.info(
                f"[cluster] the cluster has no GPUs: cluster.{kind}.gpus={gpus:g} (and any other gpus) "
                "run as gpus=0 on CPU"
            )
            info._gpu_note_done = True
        gpus = 0.0
    if info.nodes and not any(n["cpus"] >= cpus and n["gpus"] >= gpus for n in info.nodes):
        biggest = max(info.nodes, key=lambda n: (n["cpus"], n["gpus"]))
        msg = (
            f"cluster.{kind} asks for {cpus:g} CPUs and {gpus:g} GPUs per {kind}, but no node has that much "
            f"(the largest has {biggest['cpus']:g} CPUs, {biggest['gpus']:g} GPUs); lower cluster.{kind}.cpus / "
            f"cluster.{kind}.gpus or add bigger nodes"
        )
        if info.started_here:
            raise ClusterError(msg)
        logger.warning(f"[cluster] {msg} (waiting in case the cluster autoscales)")
    return {"num_cpus": cpus, "num_gpus": gpus}


# --------------------------------------------------------------------------- shared storage

PROBE_PREFIX = ".storage-probe-"


def _write_token(path: Path | ObjectPath, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token)


def _probe_storage(path: str, token: str, answer: str) -> dict:
    """Runs on one node: can it read the driver's token and write an answer next to it?"""
    import ray

    node = ray.get_runtime_context().get_node_id()
    out: dict[str, Any] = {"node_id": node, "ok": False}
    try:  # a regular file only: a FIFO or a link planted under the probe's name cannot hang the node
        seen = read_regular_text(location(path), ROW_MAX_BYTES, "storage probe")
    except StoredFileError as e:
        out["why"] = str(e)
        return out
    except Exception as e:  # OSError; no credentials or no client on that node (botocore, fsspec)
        out["why"] = f"cannot read {path}: {e.strerror if isinstance(e, OSError) and e.strerror else e}"
        return out
    if seen != token:
        out["why"] = f"{path} exists there but holds another token (a different folder with the same path)"
        return out
    try:
        location(answer).write_text(node)
    except Exception as e:
        out["why"] = f"cannot write {answer}: {e.strerror if isinstance(e, OSError) and e.strerror else e}"
        return out
    out["ok"] = True
    return out


def check_shared_storage(cfg: ExperimentConfig, info: ClusterInfo, timeout_s: float = 120.0) -> None:
    """On a multi-node cluster, make sure every node sees ``<storage>/<name>`` as this driver does."""
    if not info.multi_node or not cfg.cluster.check_storage:
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    root = location(str(cfg.storage)) / str(cfg.name)
    token = uuid.uuid4().hex
    probe = root / f"{PROBE_PREFIX}{token}"
    answers = {n["node_id"]: root / f"{PROBE_PREFIX}{token}-{n['node_id'][:12]}" for n in info.nodes}
    _write_token(probe, token)
    task = ray.remote(num_cpus=0, max_retries=0)(_probe_storage)
    try:
        refs = [
            task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["node_id"], soft=False)).remote(
                str(probe), token, str(answers[n["node_id"]])
            )
            for n in info.nodes
        ]
        results = ray.get(refs, timeout=timeout_s)
        bad = []
        for n, r in zip(info.nodes, results):
            if r.get("ok") and not answers[n["node_id"]].is_file():
                r = {**r, "ok": False, "why": f"it wrote {answers[n['node_id']]}, which this driver cannot see"}
            if not r.get("ok"):
                bad.append(f"node {n['ip']} ({n['node_id'][:12]}): {r.get('why')}")
    finally:
        probe.unlink(missing_ok=True)
        for p in answers.values():
            p.unlink(missing_ok=True)
    if bad:
        raise StorageNotSharedError(
            f"storage={cfg.storage!r} is not shared: on this {len(info.nodes)}-node cluster every node must see "
            f"{root} at the same path (checkpoints written by one node are read by others). "
            + "; ".join(bad)
            + (
                ". Give every node credentials for the bucket (AWS_* environment variables, ~/.aws or an "
                "instance role; the same AWS_ENDPOINT_URL for MinIO), or set cluster.check_storage=false"
                if isinstance(root, ObjectPath)
                else ". Point `storage` at a shared filesystem (NFS, Lustre, a mounted bucket) mounted at the same "
                "path on every node, or use an object store (storage=s3://bucket/prefix), or set "
                "cluster.check_storage=false if you know better"
            )
        )
    logger.info(f"[cluster] storage {root} is visible from all {len(info.nodes)} nodes")
