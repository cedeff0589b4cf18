"""One process's config file: its role section of the run config plus a launcher's wiring, validated and dumped.

`atlasrl up` (atlasrl/up/plan.py) and deploy (docker-free-deploy/atlasdeploy/render.py) both write what each
process runs with through ``role_file``, and each process reads it back with ``atlasrl <role> --config FILE``.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from atlasrl.actors.config import EvalConfig
from atlasrl.config.loader import ConfigError, dump_config, format_errors, merge
from atlasrl.config.schema import ROLE_MODELS

FILE_MODELS: dict[str, type[BaseModel]] = {**ROLE_MODELS, "eval": EvalConfig}
"""What each kind of process file is read as (``eval``: `atlasrl actor eval --config`)."""


def role_config(role: str, section: BaseModel | dict[str, Any] | None, wiring: dict[str, Any] | None = None) -> BaseModel:
    """``section`` (a role config or a dict of its fields) with ``wiring`` merged over it, validated."""
    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else dict(section or {})
    merge(data, dict(wiring or {}))
    try:
        return FILE_MODELS[role].model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, prefix=f"{role}.")) from None


def role_file(role: str, section: BaseModel | dict[str, Any] | None, wiring: dict[str, Any] | None = None) -> str:
    """The YAML text of ``role_config`` (what `atlasrl <role> --config` reads)."""
    return dump_config(role_config(role, section, wiring))
