"""Load a config: model defaults < preset < file (TOML, YAML or JSON) < ``--set a.b=value``; errors name the key.

The same layering serves the run config (``load_config``: `atlasrl up`, `atlasrl config show`) and one role's
config (``load_role_config``: `atlasrl <role> --config FILE --set key=value`, plus its field flags on top).
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from atlasrl.config.schema import RunConfig

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "frozenlake-tiny"
"""The preset `atlasrl up` and `atlasrl config show` use when none is named (``--preset none``: model defaults)."""

M = TypeVar("M", bound=BaseModel)


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
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: use .toml, .yaml, .yml or .json")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"config file {path} does not parse: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a table of keys")
    return data


def presets() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_data(preset: str | Path | None) -> dict[str, Any]:
    """A preset's overrides: a shipped preset's name, a file path, or None/"none" for the model defaults."""
    if preset is None or str(preset) == "none":
        return {}
    path = Path(preset)
    if path.suffix not in (".yaml", ".yml", ".toml", ".json"):
        path = PRESETS_DIR / f"{preset}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset {preset!r}: shipped presets are {', '.join(presets())} "
                              "(or give a file path, or 'none' for the model defaults)")
    return read_file(path)


def apply_override(data: dict[str, Any], override: str, *, min_depth: int = 2) -> None:
    """``actor.num_envs=8`` -> data["actor"]["num_envs"] = 8 (value parsed as YAML: numbers, bools, lists)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected {'section.key' if min_depth > 1 else 'key'}=value")
    dotted, raw = override.split("=", 1)
    keys = dotted.strip().split(".")
    if len(keys) < min_depth or not all(keys):
        raise ConfigError(f"override {override!r}: key must be section.key (e.g. actor.num_envs)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    set_path(data, keys, value, what=f"override {override!r}")


def set_path(data: dict[str, Any], keys: list[str], value: Any, *, what: str = "key") -> None:
    node = data
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{what}: {k} is not a section")
        node = child
    node[keys[-1]] = value


def get_path(data: dict[str, Any], keys: list[str]) -> Any:
    node: Any = data
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node


def format_errors(e: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in e.errors():
        key = prefix + (".".join(str(p) for p in err["loc"]) or "(config)")
        got = f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
        lines.append(f"  {key}: {err['msg']}{got}")
    return "invalid config:\n" + "\n".join(lines)


def merge(into: dict, new: dict) -> dict:
    """Deep merge ``new`` into ``into`` (tables merge key by key, anything else replaces)."""
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v
    return into


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                preset: str | Path | None = DEFAULT_PRESET, base: dict[str, Any] | None = None) -> RunConfig:
    """The run config: model defaults < preset < ``base`` < file < overrides."""
    data = preset_data(preset)
    merge(data, dict(base or {}))
    if path is not None:
        merge(data, read_file(path))
    for o in overrides:
        apply_override(data, o)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e)) from None


def role_data(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """One role's settings as given, before validation: the file, then its ``key=value`` overrides."""
    data = read_file(path) if path is not None else {}
    for o in overrides:
        apply_override(data, o, min_depth=1)
    return data


def validate_role(model: type[M], data: dict[str, Any], flags: dict[str, Any] | None = None) -> M:
    """``data`` with ``flags`` (dotted key -> value) set over it, validated as ``model``."""
    for dotted, value in (flags or {}).items():
        set_path(data, dotted.split("."), value, what=f"--{dotted}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e)) from None


def load_role_config(model: type[M], path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = (),
                     *, flags: dict[str, Any] | None = None) -> M:
    """One role's config: model defaults < file < ``key=value`` overrides < ``flags`` (dotted key -> value)."""
    return validate_role(model, role_data(path, overrides), flags)


def dump_config(cfg: BaseModel) -> str:
    """A resolved config as YAML (readable back by the loaders)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
