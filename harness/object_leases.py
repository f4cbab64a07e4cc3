"""Leases on an object store: ``fileio.exclusive_lock`` for an ``ObjectPath``.

An object store has no ``flock`` and no process that dies with its holder, so a lease is one
small JSON object at the lock's key, ``{"holder", "token", "ttl_s", "renewed", "released"}``,
and every change to it is a conditional PUT the server checks (``harness/objects.py``):

- **Take a free lease**: ``put_if_absent`` (S3 ``If-None-Match: *``): of two takers of a lease
  that was never written, the server lets exactly one create it.
- **Take a released or dead lease**: ``put_if_match`` on the ETag we saw (S3 ``If-Match``): of
  several takers, exactly one CAS succeeds; the others see a new ETag and go on waiting. The
  ETag is read (HEAD) *before* the body, so a body newer than that ETag can only make the CAS
  fail, never take a lease that was taken meanwhile.
- **Death without clocks**: the holder renews the lease every ``ttl_s / 3`` (a CAS writing
  ``renewed + 1``, so its ETag changes). A waiter counts the lease dead once its ETag has not
  changed for ``ttl_s`` seconds of the *waiter's own* monotonic clock; no two machines' clocks
  are ever compared. A dead holder's lease is thus taken over ``ttl_s`` after a waiter first
  looks at it (``take_leases``, which does not wait, reports it busy until then).
- **Our own ETag** is the one the server returns for our conditional PUT (S3 does); where a
  client does not return it, a HEAD then GET that still shows our bytes gives it.
- **ABA**: every record we write holds a fresh random token and a new renewal count, so its
  bytes (and ETag) differ from every earlier record: an ETag seen once never comes back.
- **A stalled holder** (paused for over ``ttl_s``) may find its lease taken over: its next
  renewal CAS fails and it logs an error naming the lease. Writes under a lease are fenced
  (``fence``, called before a trajectory's checkpoint, manifest and resume writes): they raise
  ``LeaseLost`` once the lease is lost or was last renewed more than 2/3 of its TTL ago (on the
  holder's clock: no waiter can have taken it over before a full TTL), so a holder that stalled
  stops instead of writing over its successor. What remains is one write already in flight when
  the stall began. A run's lease needs no fence: its row is a conditional create, so the worst
  case is a run trained twice, never two rows. A release is a CAS too: it never clobbers the new
  holder's record.
- **A PUT whose answer was lost** (s3fs and botocore retry on timeouts): the retry of a
  conditional PUT that landed is refused (412); the object then holds our unique bytes, which
  ``_landed`` recognises, so the holder does not think it lost the lease.
- **Release**: stop the renewer, then CAS a ``released`` record (on exceptions too). Leases are
  never deleted: a delete could race a taker, as POSIX lease files are left in place.

``CKD_LEASE_TTL_S`` (seconds, default 30) sets the TTL of the leases this process takes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from harness.objects import ObjectPath

logger = logging.getLogger(__name__)
DEFAULT_TTL_S = 30.0
_HELD: dict[str, _Held] = {}  # the leases this process holds, by key (for ``fence``)
TTL_ENV = "CKD_LEASE_TTL_S"
RECORD_MAX_BYTES = 64 * 1024  # a lease record is ~150 bytes


def lease_ttl_s() -> float:
    """The TTL of leases taken now: ``CKD_LEASE_TTL_S`` if set, else 30 s."""
    text = os.environ.get(TTL_ENV, "").strip()
    if not text:
        return DEFAULT_TTL_S
    try:
        ttl = float(text)
    except ValueError:
        raise ValueError(f"{TTL_ENV}={text!r} is not a number; set it to the lease TTL in seconds (e.g. 30)") from None
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"{TTL_ENV}={text!r} must be a positive number of seconds (e.g. 30)")
    return ttl


def _holder_name() -> str:
    """This process, named like the POSIX lock's holder line."""
    return f"pid {os.getpid()} on {os.uname().nodename}"


def _encode(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True).encode()


def _decode(data: bytes) -> dict | None:
    """The lease record in ``data``, or None if it is not one (damaged or foreign)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class _Seen:
    """One look at the lease object: its ETag (read first) and the record read after it."""

    etag: str
    record: dict | None

    @property
    def released(self) -> bool:
        return self.record is not None and self.record.get("released") is True

    def holder(self, path: ObjectPath) -> str:
        name = self.record.get("holder") if self.record else None
        return name if isinstance(name, str) and name else f"an unknown holder (unreadable lease {path})"

    def ttl_s(self) -> float:
        """The TTL its holder renews by (ours where the record does not say)."""
        ttl = self.record.get("ttl_s") if self.record else None
        ok = isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and math.isfinite(ttl) and ttl > 0
        return float(ttl) if ok else lease_ttl_s()


def _look(path: ObjectPath) -> _Seen | None:
    """HEAD then GET the lease (ETag first: see the module doc); None if there is no object."""
    try:
        etag = path.stat().etag
        data = path.read_bytes(RECORD_MAX_BYTES)
    except FileNotFoundError:
        return None
    return _Seen(etag, _decode(data) if len(data) <= RECORD_MAX_BYTES else None)


class LeaseLost(RuntimeError):
    """This process no longer holds a lease it took (another took it over, or it could not renew
    it in time): what it was about to write under that lease is not written."""


@dataclass
class _Held:
    """A lease this process holds: the record it last wrote, that record's ETag, and when (on
    this process's monotonic clock) it last renewed it."""

    path: ObjectPath
    record: dict
    etag: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    lost: bool = False
    renewed_at: float = field(default_factory=time.monotonic)

    def write(self, record: dict) -> bool:
        """CAS ``record`` over our last one; on success remember its ETag. False if we lost it."""
        data = _encode(record)
        etag = _landed(self.path, self.path.swap(data, self.etag), data)
        if etag is None:
            return False
        self.record, self.etag, self.renewed_at = record, etag, time.monotonic()
        return True

    def check(self) -> None:
        """``LeaseLost`` unless the lease is still ours with a margin: a waiter takes a lease over
        only after seeing its ETag unchanged for the TTL, so a renewal less than 2/3 of the TTL
        ago (on our clock) means no one can have taken it over yet."""
        ttl = float(self.record["ttl_s"])
        age = time.monotonic() - self.renewed_at
        if self.lost or age > ttl * 2 / 3:
            why = "taken over by another process" if self.lost else f"not renewed for {age:.0f} s (TTL {ttl:g} s)"
            raise LeaseLost(
                f"lease {self.path} was {why}; nothing more is written under it (the work is left to "
                "the process that holds it now, or to a re-run)"
            )


def _landed(path: ObjectPath, etag: str | None, data: bytes) -> str | None:
    """The ETag of our conditional PUT of ``data``: the one the server returned, else (no ETag
    in the answer, or a refusal that may be the retry of a PUT that landed while its answer was
    lost) the ETag of the object if it holds our bytes: records are unique, so our bytes mean
    our write."""
    if etag:
        return etag
    return _own_etag(path, data)


def fence(path: ObjectPath) -> None:
    """Before a write that only the holder of the lease at ``path`` may make: ``LeaseLost`` if
    this process took that lease and no longer safely holds it; nothing if it does not hold it."""
    held = _HELD.get(str(path))
    if held is not None:
        held.check()


def _own_etag(path: ObjectPath, data: bytes) -> str | None:
    """The ETag of the record ``data`` we have just written, or None if another writer has
    already replaced it (HEAD then GET: a body still ours means the ETag read before it is ours,
    since no one else ever writes our bytes)."""
    seen = _look(path)
    if seen is None or seen.record is None or _encode(seen.record) != data:
        return None
    return seen.etag


def _new_record(ttl_s: float) -> dict:
    return {"holder": _holder_name(), "token": secrets.token_hex(8), "ttl_s": ttl_s, "renewed": 0, "released": False}


def _try_take(path: ObjectPath, seen: _Seen | None, record: dict) -> _Held | None:
    """Create the lease (``seen`` None) or CAS over the record ``seen``; the held lease or None."""
    data = _encode(record)
    etag = _landed(path, path.create(data) if seen is None else path.swap(data, seen.etag), data)
    return _Held(path, record, etag) if etag is not None else None


def _acquire(path: ObjectPath, waiting: Callable[[str], None] | None, poll_s: float) -> _Held:
    """Take the lease at ``path``: at once if free or released; else call ``waiting(holder)``
    once and poll until it is released or its ETag stays unchanged for its TTL (dead)."""
    record = _new_record(lease_ttl_s())
    if (held := _try_take(path, None, record)) is not None:  # a lease never taken: one request
        return held
    told = False
    watched: tuple[str, float] | None = None  # (ETag, monotonic time first seen)
    while True:
        seen = _look(path)
        if seen is None or seen.released:
            if (held := _try_take(path, seen, record)) is not None:
                return held
            continue  # another taker won: look again
        now = time.monotonic()
        if watched is None or watched[0] != seen.etag:
            watched = (seen.etag, now)
        elif now - watched[1] >= seen.ttl_s():
            if (held := _try_take(path, seen, record)) is not None:
                logger.warning(
                    f"[lease] {path}: {seen.holder(path)} did not renew it for {seen.ttl_s():g} s; taken over"
                )
                return held
            continue
        if not told:
            told = True
            if waiting is not None:
                waiting(seen.holder(path))
        time.sleep(max(poll_s, 0.0))


def _renew_until(held: _Held, stop: threading.Event) -> None:
    """Renew ``held`` every TTL/3 until ``stop``; on a lost CAS log an error and stop renewing."""
    period = float(held.record["ttl_s"]) / 3
    while not stop.wait(period):
        with held.lock:
            record = {**held.record, "renewed": int(held.record["renewed"]) + 1}
            try:
                ok = held.write(record)
            except Exception as e:  # a network error: try again next period with the same ETag
                logger.warning(f"[lease] could not renew {held.path} ({e}); retrying")
                continue
            if not ok:
                held.lost = True
                seen = _look(held.path)
                by = seen.holder(held.path) if seen is not None else "no one (it was deleted)"
                logger.error(
                    f"[lease] lost lease {held.path}: it is now held by {by}, after this process "
                    f"({held.record['holder']}) did not renew it for its TTL; going on without it "
                    "(a run may be trained twice; its row is still written once)"
                )
                return


def _release(held: _Held) -> None:
    """CAS a released record over ours (never a delete); a lost lease is left to its new holder."""
    with held.lock:
        if held.lost:
            return
        try:
            ok = held.write({**held.record, "released": True})
        except Exception as e:
            logger.warning(f"[lease] could not release {held.path} ({e}); it expires in {held.record['ttl_s']:g} s")
            return
        if not ok:
            logger.error(f"[lease] lost lease {held.path} before releasing it; left to its new holder")


@contextlib.contextmanager
def object_lease(path: ObjectPath, waiting: Callable[[str], None] | None = None, poll_s: float = 0.5) -> Iterator[None]:
    """Hold the lease at ``path`` for the block (the object-store ``exclusive_lock``): if a live
    holder has it, call ``waiting(holder)`` once (it may raise: then nothing is held) and wait.
    Renewed in a daemon thread while held; released on exit, exceptions included."""
    held = _acquire(path, waiting, poll_s)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew_until, args=(held, stop), name=f"lease {path.name}", daemon=True)
    renewer.start()
    _HELD[str(path)] = held
    try:
        yield
    finally:
        _HELD.pop(str(path), None)
        stop.set()
        renewer.join()
        _release(held)


def lease_holder(path: ObjectPath) -> str | None:
    """Who holds the lease at ``path`` (e.g. ``pid 12 on node3``), or None if it is free or
    released. One look cannot tell a dead holder from a live one: a holder that died is still
    named until a waiter takes the lease over, at most its TTL after starting to wait."""
    seen = _look(path)
    if seen is None or seen.released:
        return None
    return seen.holder(path)
