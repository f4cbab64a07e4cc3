"""One small decorator registry (models, datasets, teacher choices, MI estimators), and name checks.

``known_names(kind)`` answers "which names are registered for this kind?" by importing the
package that registers them on first use, so that ``config_validation.py`` checks names before any compute
without importing a stage package itself (no import circle). Unknown names get a did-you-mean.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

# kind -> (module, function) listing the registered names; imported lazily by ``known_names``.
NAME_SOURCES: dict[str, tuple[str, str]] = {
    "model": ("harness.models", "list_models"),
    "dataset": ("harness.data", "list_datasets"),
    "teacher choice": ("harness.teacher_choices", "list_teacher_choices"),
    "estimator": ("harness.scoring", "list_estimators"),
    "normalization": ("harness.scoring", "list_normalizations"),
    "selector": ("harness.scoring", "list_selectors"),
}
# kinds whose names carry an argument (``fraction:0.5``): (module, function) that parses one
NAME_PARSERS: dict[str, tuple[str, str]] = {
    "teacher choice": ("harness.teacher_choices", "parse_teacher_choice"),
}


def natural_key(name: str) -> list:
    """Sort key that orders digits by value: resnet8 < resnet14 < resnet110 (as timm does)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name nearest to ``name`` (difflib), if any is close."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` did you mean 'x'?`` for the closest known name, or an empty string."""
    near = closest(name, known)
    return f" did you mean {near!r}?" if near else ""


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    return f"unknown {kind} {name!r};{did_you_mean(name, known)} known: {', '.join(known)}"


def known_names(kind: str) -> list[str]:
    """Registered names of ``kind`` (see ``NAME_SOURCES``), naturally sorted."""
    module, function = NAME_SOURCES[kind]
    lister: Callable[[], list[str]] = getattr(importlib.import_module(module), function)
    return sorted(lister(), key=natural_key)


def parse_name(kind: str, text: str):
    """Parse ``text`` with the parser of ``kind`` (``NAME_PARSERS``); raises its ValueError."""
    module, function = NAME_PARSERS[kind]
    return getattr(importlib.import_module(module), function)(text)


class Registry(Generic[T]):
    """Maps names to factories: ``@reg.register("name")`` adds one, ``reg.get(name)`` looks it up.

    Unknown names raise a ``KeyError`` that suggests the closest name and lists every known one,
    so a typo in a config says how to fix itself.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise KeyError(unknown_name_message(self.kind, name, self.names()))
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items, key=natural_key)

    def __contains__(self, name: object) -> bool:
        return name in self._items
