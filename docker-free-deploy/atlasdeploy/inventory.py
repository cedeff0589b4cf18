"""The inventory: hosts -> roles with flags (YAML). See ../inventory.example.yaml.

Validated with pydantic at load time; errors name the key (``hosts.env-0.roles.envserver.count``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    flags: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Extra CLI flags (``num-envs: 32`` -> ``--num-envs 32``; true -> bare flag)."""
    nproc: int = Field(1, ge=1, le=64)
    """Learner only: training processes (GPUs) on this host."""


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
    """Model directory on the learner and actor hosts (passed as --model)."""
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
                raise ValueError(f"hosts.{name}.roles.learner.count: one learner launcher per host (use nproc for GPUs)")
            ports = [p for spec in h.roles.values() for base in (spec.port, spec.metrics_port) for p in range(base, base + spec.count)]
            if len(ports) != len(set(ports)):
                raise ValueError(f"hosts.{name}: two role processes would share a port")
        return self

    @property
    def coordinator_host(self) -> str:
        return next(n for n, h in self.hosts.items() if "coordinator" in h.roles)

    def host_dir(self, name: str) -> str:
        return self.hosts[name].remote_dir or self.remote_dir

    def python_of(self, name: str) -> str:
        venv = self.hosts[name].venv or f"{self.host_dir(name)}/.venv"
        return f"{venv}/bin/python"


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
