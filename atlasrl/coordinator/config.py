"""Coordinator settings (importable without grpc or torch)."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from atlasrl.rpc.config import ServerConfig


class CoordinatorConfig(BaseModel):
    """How the coordinator serves and keeps its state."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    server: ServerConfig = Field(default_factory=lambda: ServerConfig(port=50050))
    """gRPC and /metrics listening addresses."""
    state_dir: Path = Path("coordinator-state")
    """Directory of the SQLite database (``coordinator.sqlite``); reused on restart."""
    lease_ttl_s: float = Field(10.0, gt=0.1, le=3600)
    """A member whose last heartbeat is older than this is declared dead and its work reassigned."""
    max_staleness: int = Field(4, ge=0, le=1_000_000)
    """Actors acting with weights more than this many versions behind the learner must wait."""
    history_interval_s: float = Field(2.0, gt=0.05, le=3600)
    """How often global counters and gauges are sampled into the history table (progress curves)."""
    reopen_stopped: bool = False
    """A run its last launch left STOPPING is set RUNNING at start: a deliberate new launch on the same state
    (`atlasrl up --run-dir` resuming). Off, STOPPING stays final and new members are refused."""
    restart_grace_s: float = Field(0.0, ge=0, le=3600)
    """After a restart, members loaded from the database get this long (plus one lease) to heartbeat again."""
