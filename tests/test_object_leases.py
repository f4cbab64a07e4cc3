"""Leases on an object store (``harness/object_leases.py``) against moto's S3 API server: taken
and released, waited for, exclusive under contention, taken over when their holder stops
renewing, kept while it renews, and a lost lease reported."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from harness import object_leases
from harness.fileio import exclusive_lock
from harness.leases import LeaseBusy, _refuse, take_leases
from harness.object_leases import _holder_name, lease_holder, object_lease
from harness.objects import ObjectPath, storage_location

POLL_S = 0.02


@pytest.fixture
def lease(s3_storage: str, monkeypatch: pytest.MonkeyPatch) -> ObjectPath:
    """A lease key in a fresh bucket; leases taken in the test have a 1 s TTL."""
    monkeypatch.setenv("CKD_LEASE_TTL_S", "1")
    return storage_location(s3_storage) / "results" / "leases" / "r1.lock"


def record(path: ObjectPath) -> dict:
    return json.loads(path.read_bytes())


def never(holder: str) -> None:
    raise AssertionError(f"waited for {holder} on a free lease")


def test_free_lease_taken_held_and_released(lease: ObjectPath) -> None:
    with exclusive_lock(lease, waiting=never, poll_s=POLL_S):
        held = record(lease)
        assert held["holder"] == _holder_name() and held["released"] is False
        assert lease_holder(lease) == _holder_name()
    assert record(lease)["released"] is True and record(lease)["token"] == held["token"]
    assert lease_holder(lease) is None
    with object_lease(lease, waiting=never, poll_s=POLL_S):  # the next taker gets it at once
        assert record(lease)["token"] != held["token"]


def test_released_on_exception(lease: ObjectPath) -> None:
    with pytest.raises(KeyError), object_lease(lease, None, POLL_S):
        raise KeyError("boom")
    assert record(lease)["released"] is True


def test_busy_lease_refused_holding_nothing(lease: ObjectPath) -> None:
    with object_lease(lease, None, POLL_S):
        mine = record(lease)
        with pytest.raises(LeaseBusy) as busy, object_lease(lease, _refuse, POLL_S):
            pytest.fail("entered a held lease")
        assert busy.value.holder == _holder_name()
        assert record(lease)["token"] == mine["token"]  # the refused taker wrote nothing


def test_take_leases_on_an_object_store(s3_storage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKD_LEASE_TTL_S", "1")
    root = storage_location(s3_storage) / "exp"
    with take_leases(root, ["a", "b"]) as (held, busy):
        assert (held, busy) == (["a", "b"], {})
        with take_leases(root, ["a", "c"]) as (held2, busy2):
            assert held2 == ["c"] and busy2 == {"a": _holder_name()}
    with take_leases(root, ["a"]) as (held3, busy3):
        assert (held3, busy3) == (["a"], {})


def test_stale_view_of_a_released_lease_never_steals_it(lease: ObjectPath, monkeypatch: pytest.MonkeyPatch) -> None:
    with object_lease(lease, None, POLL_S):
        pass
    stale = object_leases._look(lease)  # released, as a slow taker saw it
    other = {"holder": "pid 3 on fast", "token": "t3", "ttl_s": 1.0, "renewed": 0, "released": False}
    lease.put(json.dumps(other).encode())  # a faster taker got it meanwhile
    looks = iter([stale])
    real = object_leases._look
    monkeypatch.setattr(object_leases, "_look", lambda path: next(looks, None) or real(path))
    with pytest.raises(LeaseBusy) as busy, object_lease(lease, _refuse, POLL_S):
        pytest.fail("took a lease on a stale ETag")
    assert busy.value.holder == "pid 3 on fast" and record(lease) == other


def test_waiter_told_once_and_gets_it_after_release(lease: ObjectPath) -> None:
    told: list[str] = []
    waiting_now, entered = threading.Event(), threading.Event()

    def waiting(holder: str) -> None:
        told.append(holder)
        waiting_now.set()

    def waiter() -> None:
        with object_lease(lease, waiting, POLL_S):
            entered.set()

    with object_lease(lease, None, POLL_S):
        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting_now.wait(10)
        time.sleep(0.2)  # several polls while held
        assert not entered.is_set()
    thread.join(10)
    assert entered.is_set() and told == [_holder_name()]


def test_contending_threads_never_overlap(lease: ObjectPath) -> None:
    inside, most, done = [0], [0], [0]
    guard = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            with object_lease(lease, None, POLL_S):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.02)
                with guard:
                    inside[0] -= 1
                    done[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(25)
    assert done[0] == 12 and most[0] == 1


def test_dead_holder_taken_over_after_ttl(lease: ObjectPath) -> None:
    dead = {"holder": "pid 1 on gone", "token": "t0", "ttl_s": 1.0, "renewed": 3, "released": False}
    lease.put(json.dumps(dead).encode())
    told: list[str] = []
    with pytest.raises(LeaseBusy):  # not waiting: a lease not yet watched for its TTL is busy
        with object_lease(lease, _refuse, POLL_S):
            pass
    with object_lease(lease, told.append, POLL_S):
        assert record(lease)["holder"] == _holder_name()
    assert told == ["pid 1 on gone"]


def test_live_holder_keeps_lease_past_several_ttls(lease: ObjectPath) -> None:
    entered = threading.Event()

    def waiter() -> None:
        with object_lease(lease, None, POLL_S):
            entered.set()

    with object_lease(lease, None, POLL_S):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(3.0)  # three TTLs
        assert not entered.is_set()
        assert record(lease)["renewed"] >= 3
    thread.join(10)
    assert entered.is_set()


class _Flag(logging.Handler):
    """Sets ``event`` on the first ERROR line."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.event, self.lines = threading.Event(), []

    def emit(self, rec: logging.LogRecord) -> None:
        self.lines.append(rec.getMessage())
        self.event.set()


def test_lost_lease_logs_error_and_is_not_clobbered(lease: ObjectPath) -> None:
    flag = _Flag()
    log = logging.getLogger("harness.object_leases")
    log.addHandler(flag)
    thief = {"holder": "pid 2 on other", "token": "t9", "ttl_s": 1.0, "renewed": 0, "released": False}
    try:
        with object_lease(lease, None, POLL_S):
            lease.put(json.dumps(thief).encode())  # as if taken over while we stalled
            assert flag.event.wait(10)
    finally:
        log.removeHandler(flag)
    assert "lost lease" in flag.lines[0] and str(lease) in flag.lines[0] and "pid 2 on other" in flag.lines[0]
    assert record(lease) == thief  # our release did not overwrite the new holder


def test_writes_under_a_lost_or_stale_lease_are_fenced(s3_storage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trajectory's writes raise LeaseLost, writing nothing, once its lease was taken over or
    was not renewed for 2/3 of its TTL (a stalled holder must not write over its successor)."""
    from harness.store import LOCK, CheckpointStore

    monkeypatch.setenv("CKD_LEASE_TTL_S", "1")
    traj = CheckpointStore(s3_storage, "exp").trajectory("t-s0")
    with object_lease(traj.dir / LOCK, None, POLL_S):
        traj.write_manifest({"checkpoints": []})  # held and renewed: written
        real = time.monotonic
        monkeypatch.setattr(object_leases.time, "monotonic", lambda: real() + 0.8)  # as if stalled 0.8 s
        with pytest.raises(object_leases.LeaseLost, match=r"not renewed for"):
            traj.save_resume({"epoch": 1})
        monkeypatch.setattr(object_leases.time, "monotonic", real)
        thief = {"holder": "pid 2 on other", "token": "t9", "ttl_s": 1.0, "renewed": 0, "released": False}
        (traj.dir / LOCK).put(json.dumps(thief).encode())  # taken over while we stalled
        wait_for_lost = time.time() + 10
        while time.time() < wait_for_lost and not object_leases._HELD[str(traj.dir / LOCK)].lost:
            time.sleep(0.05)
        with pytest.raises(object_leases.LeaseLost, match=r"taken over by another process"):
            traj.save_checkpoint(2, {"w": 1}, {"checkpoints": []}, {})
    assert not traj.resume_path.is_file() and not traj.checkpoint_path(2).is_file()
    traj.save_resume({"epoch": 1})  # not holding that lease (any more): no fence
