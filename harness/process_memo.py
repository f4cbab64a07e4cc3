"""Verified inputs kept in memory between the runs one worker process trains.

A Tune trial worker with ``sweep.reuse_actors`` trains trial after trial in one process; without
this it re-reads (and re-verifies) the data set and the teachers' cached logits for every trial,
a fixed cost per trial that a bare Tune trainable does not pay. ``enable()`` is called by the
trial (``harness.cluster.trainable.distill_trial``) only; everywhere else (``--local``, tests,
teachers, scorers) nothing is kept, so a file changed or removed between two calls is read anew.

What is kept was verified when it was read (sha256, schema) and is keyed by everything that
fixed it (the data config and storage folder; the checkpoint's sha256, the data key, the split),
so a later call gets the very tensors a fresh read would give: the same bits. Nothing is written
through it; callers must not modify what they get.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

_enabled = False


def enable(on: bool = True) -> None:
    """Keep verified inputs in this process from now on (``on=False``: stop, and forget them)."""
    global _enabled
    _enabled = on
    if not on:
        SPLITS.clear()
        LOGITS.clear()


def enabled() -> bool:
    return _enabled


class Memo:
    """A small least-recently-used map, used only while ``enabled()``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get_or_make(self, key_of: Callable[[], Hashable], make: Callable[[], Any]) -> Any:
        """``make()``'s value, kept under ``key_of()`` while enabled (else made every time, and
        the key, which may cost a config conversion, never computed)."""
        if not _enabled:
            return make()
        key = key_of()
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


SPLITS = Memo(1)  # one data set per worker: a trial worker trains students of one experiment
LOGITS = Memo(96)  # teacher logit tables (checkpoint x split); 96 CIFAR-100 test tables are ~380 MB
