"""Loading a config: the YAML file and ``key=value`` overrides merged onto the schema
(``harness.config``), then validated (``harness.config_validation``). Every mistake is a one-line
``ConfigError`` that names its key or file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.config import ConfigError, ExperimentConfig, range_parts, range_text
from harness.config_bounds import MAX_LIST
from harness.config_validation import validate
from harness.registry import did_you_mean


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Load YAML (optional) + ``key=value`` overrides onto the schema and validate the result."""
    try:
        layers: list[Any] = [OmegaConf.structured(ExperimentConfig)]
        if path is not None:
            layers.append(_load_yaml(Path(path)))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"override {bad[0]!r} is not of the form key=value")
        layers.append(_from_dotlist(list(overrides)))
        cfg = _merge(layers, list(overrides))
        if OmegaConf.is_missing(cfg, "name"):
            raise ConfigError(
                "config key 'name': missing; set `name: <experiment>` in the file or name=... on the command line"
            )
        expand_home(cfg)
        canonical_seeds(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(_omegaconf_message(e, list(overrides))) from None
    validate(cfg)
    return cfg  # type: ignore[return-value]


PATH_KEYS = ("storage", "data.root")  # config keys that hold paths on this machine


def expand_home(cfg: DictConfig) -> None:
    """``~`` / ``~user`` at the start of a path key is the home folder, as in a shell, for every
    consumer (done once, here; without it ``storage=~/x`` was a literal ``./~/x``)."""
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and value.startswith("~"):
            OmegaConf.update(cfg, key, os.path.expanduser(value))


SEED_KEYS = ("teacher.seeds", "sweep.seeds")  # a list of ints or "range(a, b[, step])" (harness.config.seed_list)
NODE_LIMIT = "node expansion exceeds"  # OmegaConf's YAML loader: at most 10^4 nodes per document


def canonical_seeds(cfg: DictConfig) -> None:
    """A seed range as ``ckd config`` prints it (``range(0,10)`` -> ``range(0, 10)``): one text per range."""
    for key in SEED_KEYS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and (parts := range_parts(value)) is not None:
            OmegaConf.update(cfg, key, range_text(*parts), merge=False)


def too_long(key: str, items: Any, in_file: bool = False) -> ConfigError:
    """A list longer than OmegaConf's YAML loader reads, in one line naming its key and the fix
    (a seed range for seeds: exact when the list is one; ``in_file``: the fix in YAML syntax)."""
    n = len(items) if isinstance(items, list) else "too many"
    if key in SEED_KEYS:
        seeds = "range(start, stop[, step])"
        if isinstance(items, list) and len(items) > 1 and all(isinstance(x, int) for x in items):
            step = items[1] - items[0]
            if step > 0 and items == list(range(items[0], items[-1] + 1, step)):
                seeds = range_text(items[0], items[-1] + step, step)
        name = key.rsplit(".", 1)[-1]
        fix = f"write {name}: {seeds} (under {key.split('.')[0]}:)" if in_file else f"write '{key}={seeds}'"
    else:
        fix = f"a list holds at most {MAX_LIST} values"
    return ConfigError(
        f"config key {key!r}: {n} values are more than OmegaConf reads from YAML (its node limit); {fix}"
    )


def _longest_list(node: Any, key: str = "") -> tuple[str, Any]:
    """The dotted key and items of the longest list in plain YAML data (the one past the limit)."""
    if isinstance(node, list):
        return key, node
    best: tuple[str, Any] = ("", [])
    for k, v in node.items() if isinstance(node, dict) else ():
        got = _longest_list(v, f"{key}.{k}" if key else str(k))
        best = got if len(got[1]) > len(best[1]) else best
    return best


def _merge(layers: list[Any], overrides: list[str]) -> DictConfig:
    """Merge the layers; a merge error that is not OmegaConf's own (e.g. a dict where a list
    belongs) is traced to its override and named."""
    try:
        return OmegaConf.merge(*layers)
    except OmegaConfBaseException:
        raise  # named by load_config
    except (TypeError, ValueError) as e:
        first = str(e).splitlines()[0]
        for o in overrides:
            try:
                OmegaConf.merge(layers[0], OmegaConf.from_dotlist([o]))
            except (TypeError, ValueError):
                key, value = o.split("=", 1)
                if "incompatible container types" in first and OmegaConf.is_list(_select(layers[0], key)):
                    first = f"expected a list, got the mapping {value}"
                raise ConfigError(f"config key {key!r}: {first}") from None
        raise ConfigError(f"the config file does not fit the schema: {first}") from None


def _from_dotlist(overrides: list[str]) -> DictConfig:
    """``key=value`` overrides, each parsed by OmegaConf's own YAML loader first, so a value it
    cannot read (or reads as a mapping inside a list) is a one-line error naming the override
    and the quoting that works."""
    schema = OmegaConf.structured(ExperimentConfig)
    for o in overrides:
        key, value = o.split("=", 1)
        try:
            parsed = OmegaConf.select(OmegaConf.from_dotlist([o]), key)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            if NODE_LIMIT in str(e):
                raise too_long(key, _plain(value)) from None
            raise ConfigError(
                f"override {o!r}: YAML cannot read the value ({problem}); {_quote_fix(schema, key, value)}"
            ) from None
        except OmegaConfBaseException:
            continue  # a key OmegaConf cannot address: named by the merge
        if isinstance(parsed, ListConfig) and OmegaConf.is_list(_select(schema, key)):
            mappings = [x for x in parsed if isinstance(x, DictConfig)]
            if mappings:
                raise ConfigError(
                    f"override {o!r}: an element was read as a YAML mapping (': ' separates a key from its value); "
                    + _quote_fix(schema, key, value)
                )
    return OmegaConf.from_dotlist(overrides)


def _plain(value: str) -> Any:
    """``value`` read by PyYAML alone (no node limit), or None when it cannot be read."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return None


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key)
    except OmegaConfBaseException:
        return None


QUOTE_NEEDED = re.compile(r"[:\[\]{},#&*!|>'%@`]")


def _split_top_level(inner: str) -> list[str]:
    """``a,b:[1,2],c`` -> ``['a', 'b:[1,2]', 'c']``: commas outside brackets split."""
    parts, depth, cur = [], 0, ""
    for ch in inner:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in [*parts, cur]]


def quoted_value(value: str) -> str:
    """The value with every list element (or the scalar) that holds YAML syntax in double
    quotes: ``[none,snapshot:[0.5,1.0]]`` -> ``[none,"snapshot:[0.5,1.0]"]``."""
    text = value.strip()

    def q(x: str) -> str:
        return f'"{x}"' if QUOTE_NEEDED.search(x) and not x.startswith(('"', "'")) else x

    if text.startswith("[") and text.endswith("]"):
        return "[" + ",".join(q(x) for x in _split_top_level(text[1:-1]) if x) + "]"
    return q(text)


def _quote_fix(schema: DictConfig, key: str, value: str) -> str:
    """What to write instead: the override with its elements quoted, itself in single quotes
    for the shell (checked to load onto the schema here; a generic hint when it would not)."""
    fixed = f"{key}={quoted_value(value)}"
    try:
        OmegaConf.merge(schema, OmegaConf.from_dotlist([fixed]))
    except (yaml.YAMLError, OmegaConfBaseException, TypeError, ValueError):
        return (
            "check that its brackets and quotes are balanced; quote the elements that hold ':', brackets or "
            "commas in double quotes and the whole override in single quotes"
        )
    return f"quote the elements that hold ':', brackets or commas, and the whole override for the shell: '{fixed}'"


def _load_yaml(path: Path) -> DictConfig:
    """The YAML file as a mapping; malformed, empty or non-mapping files are one-line errors."""
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        hint = " (YAML indents with spaces, never tabs)" if "\t" in path.read_text() else ""
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}: {problem}{hint}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {e}") from None
    if data is None:
        raise ConfigError(f"config file {str(path)!r} is empty; it needs at least `name: <experiment>`")
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r}: the top level must be a mapping of keys "
            f"(name:, data:, teacher:, ...), not a {type(data).__name__}"
        )
    try:
        return OmegaConf.load(path)
    except yaml.YAMLError as e:
        if NODE_LIMIT not in str(e):
            raise
        raise too_long(*_longest_list(data), in_file=True) from None


KINDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}
PLURAL = {"Integer": "integers", "Float": "numbers", "Boolean": "true/false values", "String": "strings"}
NOT_A_LIST = ("is not a ListConfig", "Cannot merge incompatible container types")


def _omegaconf_message(e: OmegaConfBaseException, overrides: list[str] = ()) -> str:
    """One line for an OmegaConf error: the key, what was expected and got, and the fix where
    there is one (``overrides``: the raw text of the value, when it came from the command line)."""
    key = getattr(e, "full_key", None)
    first = str(e).splitlines()[0]
    if not key:
        return first
    base, element = re.fullmatch(r"(.*?)(?:\[(\d+)\])?", key).groups()
    raw = next((o.split("=", 1)[1] for o in reversed(overrides) if o.split("=", 1)[0] == base), None)
    got = raw if raw is not None else "a single value"
    conv = re.match(r"Value '(.*)' of type '(\w+)' could not be converted to (\w+)", first)
    if any(s in first for s in NOT_A_LIST):
        fix = f"; write {base}=[{raw}]" if raw is not None and not raw.lstrip().startswith("{") else ""
        return f"config key {base!r}: expected a list, got {got}{fix}"
    if conv and element is not None:
        kinds = PLURAL.get(conv.group(3), conv.group(3).lower())
        return f"config key {base!r}: expected a list of {kinds}; element {element} is {conv.group(1)!r}"
    if conv:
        kind = KINDS.get(conv.group(3), conv.group(3).lower())
        if conv.group(2) == "ListConfig":
            one = raw is not None and raw.strip().startswith("[") and "," not in raw
            return f"config key {key!r}: expected {kind}, got the list {got}" + (
                f"; write {key}={raw.strip()[1:-1].strip()}" if one else "; give a single value"
            )
        return f"config key {key!r}: expected {kind}, got {conv.group(1)!r}"
    if first.startswith("Cannot convert 'ListConfig' to string"):
        return f"config key {key!r}: expected a single value, got the list {got}"
    none = re.match(r"Incompatible value 'None' for field of type '(\w+)'", first)
    if none:
        return f"config key {key!r}: expected a value of type {none.group(1)}, got nothing (null or an empty value)"
    bad = re.match(r"Invalid value '(.*)', expected one of \[(.*)\]", first)
    if bad:  # a closed-set (Enum) field: suggest the nearest allowed value
        first += did_you_mean(bad.group(1), [v.strip() for v in bad.group(2).split(",")])
    return f"config key {key!r}: {first}"
