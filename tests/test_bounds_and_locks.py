"""Issue 18, faults 9, 12 and 13: every number of the config bounded before compute, one student
trained by one process (run leases), and W&B online that gives up on a server that never answers."""

from __future__ import annotations

import copy
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from omegaconf import ListConfig, OmegaConf
from omegaconf.nodes import FloatNode, IntegerNode

from harness import tracking
from harness.config import ConfigError, ExperimentConfig
from harness.config_bounds import BOUNDS, numeric_fields
from harness.config_loading import load_config
from harness.config_validation import validate
from harness.distill import distill_pack
from harness.leases import lease_path
from harness.runs import Run, RunResolver
from harness.store import CheckpointStore
from tests.helpers import QUICKSTART, ROOT, assert_refused_in_one_line, tiny_overrides, wait_for

# ----------------------------------------------------------------------------- 9. bounds


def _numeric_leaves(node, prefix: str = "") -> dict[str, tuple[type, bool]]:
    """Every int/float leaf of the schema, found through OmegaConf (not through config_bounds):
    key -> (number type, is a list)."""
    out: dict[str, tuple[type, bool]] = {}
    for key in node:
        child, path = node._get_node(key), f"{prefix}{key}"
        if OmegaConf.is_dict(child) and path != "data.options":
            out.update(_numeric_leaves(child, path + "."))
        elif isinstance(child, (IntegerNode, FloatNode)):
            out[path] = (int if isinstance(child, IntegerNode) else float, False)
        elif isinstance(child, ListConfig) and child._metadata.element_type in (int, float):
            out[path] = (child._metadata.element_type, True)
    return out


LEAVES = _numeric_leaves(OmegaConf.structured(ExperimentConfig))


def test_the_bounds_walk_covers_every_numeric_field_of_the_schema():
    walked = {key: name for key, name, _ in numeric_fields()}
    assert set(walked) == set(LEAVES) and len(LEAVES) > 60
    assert all(name in BOUNDS for name in walked.values())


BASE = load_config(QUICKSTART, [])


def _bad_values(kind: type) -> list[float]:
    inf = float("inf")
    return [inf, -inf, float("nan"), 1e308, -1e308] if kind is float else [10**12, -(10**12)]


@pytest.mark.parametrize("key", sorted(LEAVES))
def test_every_numeric_key_refuses_infinite_nan_and_huge_values_in_one_line_naming_it(key):
    """Through ``validate`` on the loaded quickstart (the override parser is the CLI test's part)."""
    kind, is_list = LEAVES[key]
    for value in _bad_values(kind):
        cfg = copy.deepcopy(BASE)
        OmegaConf.update(cfg, key, [value] if is_list else value, merge=False)
        with pytest.raises(ConfigError) as e:
            validate(cfg)
        msg = str(e.value)
        assert "\n" not in msg and re.search(rf"'{re.escape(key)}(\[0\])?'", msg), (key, value, msg)


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "teacher.epochs=1000000000",
            "config key 'teacher.epochs': 1000000000 is out of range; must be in [1, 100000]",
        ),
        ("threads=100000", "config key 'threads': 100000 is out of range; must be in [0, 1024]"),
        ("distill.temperature=.inf", "config key 'distill.temperature': inf is out of range; must be a finite number"),
        ("student.optim.lr=1e308", "config key 'student.optim.lr': 1e+308 is out of range; must be in (0, 10]"),
        ("sweep.temperature=[4.0,.nan]", "config key 'sweep.temperature[1]': nan is out of range"),
        ("data.options.noise=.inf", "config key 'data.options.noise': inf is not a finite number"),
        ("sweep.pack_size=100000", "config key 'sweep.pack_size': must be a positive integer or auto (at most 512)"),
    ],
)
def test_the_issues_values_are_refused_by_the_cli_before_compute(tmp_path, capsys, override, expected):
    storage = tmp_path / "runs"
    assert_refused_in_one_line(
        capsys, ["teachers", str(QUICKSTART), f"storage={storage}", override, "--local"], storage, expected
    )


def test_too_long_a_list_is_refused():
    seeds = "[" + ",".join(str(i) for i in range(1001)) + "]"
    with pytest.raises(ConfigError, match=r"config key 'sweep.seeds': 1001 values; at most 1000"):
        load_config(QUICKSTART, [f"sweep.seeds={seeds}"])


# ----------------------------------------------------------------------------- 12. run leases

HOLD = """
import sys, time
from pathlib import Path
from harness.fileio import exclusive_lock
with exclusive_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def _none_runs(cfg, seeds: list[int]) -> list[Run]:
    return [Run.in_grid(cfg, "cnn1d_small", "mlp_small", "none", 4.0, 0.0, i) for i in seeds]


@pytest.mark.timeout(120)
def test_a_run_leased_by_a_live_process_is_skipped_and_taken_over_when_it_dies(tmp_path, logs):
    cfg = load_config(QUICKSTART, tiny_overrides(tmp_path / "runs", **{"sweep.seeds": "[0,1]"}))
    store = CheckpointStore(tmp_path / "runs", "quickstart")
    runs = _none_runs(cfg, [0, 1])
    rows = distill_pack(cfg, runs[:1])  # run 0 trains here (its lease is free), run 1 is leased below
    held_id = _run_id(cfg, runs[1])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lease_path(store.root, held_id))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        both = distill_pack(cfg, runs, wait=False)
        assert both[0] == rows[0] and both[1] is None and store.results.find(held_id) is None
        assert f"run {held_id} is being trained by pid {holder.pid} on" in logs.text
        logs.clear()
        waiter = threading.Thread(target=lambda: both.__setitem__(1, distill_pack(cfg, runs[1:])[0]))
        waiter.start()  # waits for the holder, which dies without a row: the run trains here
        wait_for(lambda: "waiting for pid" in logs.text, timeout=30)
        assert waiter.is_alive()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    waiter.join(timeout=60)
    assert both[1] is not None and both[1]["run_id"] == held_id and store.results.find(held_id) == both[1]
    assert logs.text.count("recorded") == 1


def _run_id(cfg, run: Run) -> str:
    return RunResolver(cfg).resolve(run).run_id


SWEEP = "import sys; from harness.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.timeout(300)
def test_two_concurrent_local_sweeps_train_every_student_once(tmp_path):
    """Two real ``ckd sweep --local`` on one config at once: each run id is recorded once in all,
    both exit 0, and the results hold every run."""
    overrides = tiny_overrides(
        tmp_path / "runs",
        **{
            "sweep.teacher_choices": "[none]",
            "sweep.seeds": "[0,1,2,3,4,5]",
            "sweep.pack_size": 1,
            "student.epochs": 3,
        },
    )
    argv = ["sweep", str(QUICKSTART), *overrides, "--local"]
    errs = [tmp_path / "a.err", tmp_path / "b.err"]
    procs = []
    for err in errs:
        with open(err, "w") as fh:
            procs.append(subprocess.Popen([sys.executable, "-c", SWEEP, *argv], stderr=fh, cwd=ROOT))
    codes = [p.wait(timeout=240) for p in procs]
    texts = [e.read_text() for e in errs]
    assert codes == [0, 0], [t[-2000:] for t in texts]
    recorded = re.findall(r"row (\w+) recorded in", "\n".join(texts))
    assert len(recorded) == 6 and len(set(recorded)) == 6, recorded  # every student trained once, in all
    rows = CheckpointStore(tmp_path / "runs", "quickstart").read_results()
    assert sorted(r["run_id"] for r in rows) == sorted(recorded)
    if all("6 to train in this process" in t for t in texts):  # both planned every run: they overlapped
        met = "\n".join(texts)
        assert "is being trained by pid" in met or "has a result already" in met or "meanwhile" in met


# ----------------------------------------------------------------------------- 13. W&B gives up


class SilentServer:
    """A real TCP server that accepts every connection and never answers (nor closes)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.timeout(60)
def test_online_against_a_server_that_never_answers_falls_back_within_15_s_with_one_warning(
    tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.WARNING, logger="harness")
    server = SilentServer()
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.port}")
    monkeypatch.setattr(tracking, "_ONLINE_CHECKS", {})
    monkeypatch.setattr(tracking, "_WARNED", set())
    cfg = load_config(QUICKSTART, [f"storage={tmp_path}", "tracking.mode=online"])
    try:
        began = time.time()
        assert tracking.tracking_mode(cfg) == "offline"
        assert time.time() - began < 15 and server.conns  # it did connect: the probe waited for HTTP
        again = time.time()
        assert tracking.tracking_mode(cfg) == "offline" and tracking.init_kwargs(cfg)["mode"] == "offline"
        assert time.time() - again < 1  # the rest of the process: offline at once
    finally:
        server.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"127.0.0.1:{server.port} did not answer within" in warnings[0], warnings
    assert "logging offline instead" in warnings[0]


class NotFoundServer:
    """A real HTTP server (raw sockets) that answers every request with 404."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            pass
        conn.close()


@pytest.mark.timeout(120)
def test_a_server_that_answers_http_passes_the_probe_and_a_failed_online_run_is_logged_offline(
    tmp_path, monkeypatch, caplog
):
    """The probe asks only whether the server talks HTTP (any status line will do); when W&B then
    fails online, this run is logged offline and so is the rest of the process (one warning)."""
    caplog.set_level(logging.WARNING, logger="harness")
    server = NotFoundServer()
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.port}")
    monkeypatch.setattr(tracking, "_ONLINE_CHECKS", {})
    monkeypatch.setattr(tracking, "_WARNED", set())
    cfg = OmegaConf.create(
        {
            "name": "exp",
            "storage": str(tmp_path / "runs"),
            "tracking": {"mode": "online", "project": "p", "entity": None},
        }
    )
    assert tracking.tracking_mode(cfg) == "online"
    assert tracking.init_kwargs(cfg)["settings"]["init_timeout"] <= 15
    run_dir = tracking.log_student_run(cfg, "t1", {"teacher_choice": "none"}, [{"epoch": 1, "val_acc": 0.5}])
    assert run_dir is not None and run_dir.name.startswith("offline-run-")
    assert tracking.tracking_mode(cfg) == "offline" and tracking.offline_run_dirs(cfg) == [run_dir]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "W&B failed online" in warnings[0], warnings
