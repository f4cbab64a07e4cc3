"""Loading a config: the YAML file and ``key=value`` overrides merged onto the schema
(``harness.config``), then validated (``harness.config_validation``). Every mistake is a one-line
``ConfigError`` that names its key or file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.config import ConfigError, ExperimentConfig
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
    except OmegaConfBaseException as e:
        raise ConfigError(_omegaconf_message(e)) from None
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
                raise ConfigError(f"config key {o.split('=', 1)[0]!r}: {first}") from None
        raise ConfigError(f"the config file does not fit the schema: {first}") from None


def _from_dotlist(overrides: list[str]) -> DictConfig:
    """``key=value`` overrides; a value YAML cannot parse is a one-line error naming its key."""
    try:
        return OmegaConf.from_dotlist(overrides)
    except yaml.YAMLError:
        for o in overrides:
            key, value = o.split("=", 1)
            try:
                yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(
                    f"config key {key!r}: the value {value!r} is not valid YAML; quote it, e.g. {key}='\"{value}\"'"
                ) from None
        raise


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
    return OmegaConf.load(path)


def _omegaconf_message(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    first = str(e).splitlines()[0]
    bad = re.match(r"Invalid value '(.*)', expected one of \[(.*)\]", first)
    if bad:  # a closed-set (Enum) field: suggest the nearest allowed value
        first += did_you_mean(bad.group(1), [v.strip() for v in bad.group(2).split(",")])
    return f"config key {key!r}: {first}" if key else first
