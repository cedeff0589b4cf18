"""Load a run config: defaults < file (TOML or YAML) < ``--set a.b=value`` overrides; errors name the key."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from atlasrl.config.schema import RunConfig


class ConfigError(ValueError):
    """The config is invalid; the message names each offending key."""


def read_file(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path}: use .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"config file {path} does not parse: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a table of sections")
    return data


def apply_override(data: dict[str, Any], override: str) -> None:
    """``actor.num_envs=8`` -> data["actor"]["num_envs"] = 8 (value parsed as YAML: numbers, bools, lists)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected section.key=value")
    dotted, raw = override.split("=", 1)
    keys = [k for k in dotted.strip().split(".")]
    if len(keys) < 2 or not all(keys):
        raise ConfigError(f"override {override!r}: key must be section.key (e.g. actor.num_envs)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {k} is not a section")
        node = child
    node[keys[-1]] = value


def format_errors(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(config)"
        got = f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
        lines.append(f"  {key}: {err['msg']}{got}")
    return "invalid config:\n" + "\n".join(lines)


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                base: dict[str, Any] | None = None) -> RunConfig:
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        _merge(data, read_file(path))
    for o in overrides:
        apply_override(data, o)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e)) from None


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (readable back by load_config)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _merge(into: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
