"""The inventory: hosts -> roles, each with its role config (YAML). See ../inventory.example.yaml.

Validated with pydantic at load time; errors name the key (``hosts.env-0.roles.envserver.count``). A role's
settings are fields of that role's config model (atlasrl/<role>/config.py, docs/config.md): ``config`` at the
top level applies to every process of a role, a host's ``roles.<role>.config`` overrides it there. Both are
checked against the role's model here, so a misspelt key fails before anything is deployed.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ROLES = ("coordinator", "envserver", "memory", "learner", "actor")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoleSpec(Strict):
    count: int = Field(1, ge=1, le=256)
    """Processes of this role on the host (ports port, port+1, ...)."""
    port: int = Field(..., ge=1, le=65535)
    """gRPC port of the first process."""
    metrics_port: int = Field(..., ge=1, le=65535)
    """/metrics port of the first process."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Settings of these processes: fields of the role's config (``num_envs: 32``, ``atlas: {blend_rate: 0.3}``)
    over the inventory's ``config.<role>``. The learner's ``nproc`` (GPUs on this host) is one of them."""


class Host(Strict):
    ssh: str = "local"
    """ssh destination (``user@host``, an ~/.ssh/config alias) or ``local`` to run on this machine."""
    ssh_port: int = Field(22, ge=1, le=65535)
    """ssh port."""
    address: str = "127.0.0.1"
    """Address the other hosts use to reach this host's roles; roles bind to it."""
    remote_dir: str | None = None
    """Where the code (and the venv) lives on this host; default: the inventory's remote_dir."""
    venv: str | None = None
    """Existing virtual environment to use instead of creating <remote_dir>/.venv."""
    roles: dict[Literal["coordinator", "envserver", "memory", "learner", "actor"], RoleSpec]
    """Roles on this host."""


class Inventory(Strict):
    name: str = Field("atlasrl", pattern=r"^[A-Za-z0-9_.-]+$")
    """Run name: unit names, rendezvous id and the coordinator state directory derive from it."""
    remote_dir: str = "/opt/atlasrl"
    """Default code + venv directory on every host."""
    python: str = "python3"
    """Python (3.11+) used to create the venv on hosts."""
    install_flags: list[str] = Field(default_factory=list)
    """Extra flags of scripts/install.sh (``--maniskill``)."""
    service_manager: Literal["auto", "systemd", "plain"] = "auto"
    """systemd units (Restart=on-failure), a plain restart loop, or auto: systemd where it runs."""
    rdzv_port: int = Field(29400, ge=1, le=65535)
    """torchrun rendezvous port on the first learner host (multi-node learner)."""
    model: str = ""
    """Model directory on the learner and actor hosts (their ``model`` setting)."""
    config: dict[Literal["coordinator", "envserver", "memory", "learner", "actor"], dict[str, Any]] = Field(default_factory=dict)
    """Settings every process of a role gets (fields of its config model); a host's roles.<role>.config overrides."""
    hosts: dict[str, Host]
    """Hosts by name."""

    @model_validator(mode="after")
    def _check(self) -> Inventory:
        count = {r: sum(1 for h in self.hosts.values() if r in h.roles) for r in ROLES}
        if count["coordinator"] != 1 or self.hosts[self.coordinator_host].roles["coordinator"].count != 1:
            raise ValueError("exactly one coordinator process is needed (one host with roles.coordinator, count 1)")
        if count["memory"] > 1:
            raise ValueError("at most one memory host")
        for name, h in self.hosts.items():
            if "learner" in h.roles and h.roles["learner"].count != 1:
                raise ValueError(f"hosts.{name}.roles.learner.count: one learner launcher per host (config nproc: GPUs)")
            for role in h.roles:
                check_role_config(role, self.role_config(name, role), f"hosts.{name}.roles.{role}.config")
            ports = [p for spec in h.roles.values() for base in (spec.port, spec.metrics_port) for p in range(base, base + spec.count)]
            if len(ports) != len(set(ports)):
                raise ValueError(f"hosts.{name}: two role processes would share a port")
        return self

    @property
    def coordinator_host(self) -> str:
        return next(n for n, h in self.hosts.items() if "coordinator" in h.roles)

    def role_config(self, host: str, role: str) -> dict[str, Any]:
        """The settings of ``role`` on ``host``: the inventory's config.<role>, then the host's (deep-merged)."""
        from atlasrl.config.loader import merge

        return merge(merge({}, copy.deepcopy(self.config.get(role, {}))), copy.deepcopy(self.hosts[host].roles[role].config))

    def host_dir(self, name: str) -> str:
        return self.hosts[name].remote_dir or self.remote_dir

    def python_of(self, name: str) -> str:
        venv = self.hosts[name].venv or f"{self.host_dir(name)}/.venv"
        return f"{venv}/bin/python"


def check_role_config(role: str, settings: dict[str, Any], where: str) -> None:
    """Validate settings against the role's config model; the error names the key under ``where``."""
    from atlasrl.config.loader import ConfigError
    from atlasrl.config.roles import role_config

    try:
        role_config(role, settings)
    except ConfigError as e:
        raise ValueError(str(e).replace(f"  {role}.", f"  {where}.")) from None


class InventoryError(ValueError):
    """The inventory is invalid; the message names the key."""


def load_inventory(path: Path | str) -> Inventory:
    try:
        data = yaml.safe_load(Path(path).read_text())
        return Inventory.model_validate(data)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(p) for p in err['loc']) or '(inventory)'}: {err['msg']}" for err in e.errors()]
        raise InventoryError(f"invalid inventory {path}:\n" + "\n".join(lines)) from None
    except (OSError, yaml.YAMLError) as e:
        raise InventoryError(f"cannot read inventory {path}: {e}") from None
