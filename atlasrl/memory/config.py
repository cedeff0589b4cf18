"""Configuration of the memory role (importable without grpc or torch)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from atlasrl.rpc.config import ServerConfig


class AtlasConfig(BaseModel):
    """Statistics and blending of the danger / affinity atlases (formulas in atlas.py)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    gamma_danger: float = Field(0.5, gt=0, le=1)
    """Per-step discount of failure mass back along a failed trajectory (gamma_d)."""
    gamma_affinity: float = Field(0.9, gt=0, le=1)
    """Per-step discount of success mass back along a successful trajectory (gamma_a)."""
    prior_visits: float = Field(0.5, ge=0)
    """Pseudo-visits kappa in the rate F / (N + kappa): cells seen once do not get full weight."""
    normalisation: Literal["bound", "max"] = "bound"
    """Evidence scaling to [0, 1]: by the rate's upper bound (absolute, comparable across layouts) or by the grid maximum."""
    blend_rate: float = Field(0.5, gt=0, le=1)
    """EMA rate eta: published map <- (1 - eta) * map + eta * normalised evidence, per applied episode."""
    cause_weights: dict[str, float] = Field(default_factory=lambda: {"hole": 1.0, "deadlock": 1.0, "failure": 1.0, "timeout": 0.25})
    """Failure mass w_c per terminal cause; causes not listed weigh `other_cause_weight`."""
    other_cause_weight: float = Field(1.0, ge=0)
    """w_c for a failure cause missing from cause_weights."""
    stall_steps: int = Field(0, ge=0, le=100_000)
    """Danger for getting stuck: a visit that ends a run of at least this many consecutive steps on one cell
    (turning in place, walking into a wall: continuous-space envs such as MiniWorld) carries failure mass
    ``stall_weight``, whatever the episode's outcome; 0 = off (grid games stay in a cell only when bumping an edge)."""
    stall_weight: float = Field(0.5, ge=0)
    """Failure mass of one stalled visit (capped at the largest cause weight, so a visit still adds at most w_max)."""
    anchor_kinds: tuple[str, ...] = ("goal", "target")
    """Entity kinds that anchor the goal-relative family atlas, in order of preference."""
    tracked_entity_kinds: tuple[str, ...] = ("box", "object")
    """Movable entity kinds whose final cells are counted per outcome (dead-end skills)."""


class ShapingConfig(BaseModel):
    """Potential Phi = lambda_a * A - lambda_d * D and F = gamma * Phi(s') - Phi(s)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    gamma: float = Field(0.99, gt=0, le=1)
    """Default discount of the shaping term (a ShapeBatch may override it). `atlasrl up` sets it to the discount of
    the returns its learner trains on (learner.step_gamma for GiGPO, else 1), so the shaping telescopes exactly."""
    lambda_affinity: float = Field(1.0, ge=0)
    """Weight lambda_a of the affinity map in the potential."""
    lambda_danger: float = Field(1.0, ge=0)
    """Weight lambda_d of the danger map in the potential."""
    layout_trust_episodes: float = Field(10.0, ge=0)
    """m0: the layout map gets weight n / (n + m0) against the family map (n = layout episodes); 0 = layout only once seen."""


class ExemplarConfig(BaseModel):
    """Bounded key-frame sets per family."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    capacity_per_outcome: int = Field(32, ge=1, le=4096)
    """Frames kept per (family, outcome); a full set evicts its most redundant frame."""
    embed_side: int = Field(12, ge=2, le=64)
    """Frames are area-downsampled to embed_side x embed_side RGB for the embedding."""
    hist_bins: int = Field(8, ge=2, le=64)
    """Colour histogram bins per channel appended to the embedding."""
    stored_side: int = Field(128, ge=16, le=1024)
    """Stored frames are downsampled so their longer side is at most this (bounds memory)."""
    max_top_k: int = Field(16, ge=0, le=256)
    """Largest top_k a Query may ask for."""


class SkillConfig(BaseModel):
    """Thresholds of the text-skill templates (skills.py)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    min_support: int = Field(3, ge=1)
    """Fewest visits (or episodes) a cell needs before a rule may name it."""
    danger_rate: float = Field(0.5, gt=0, le=1)
    """A cell is named in an avoid rule when this share of its visits ended in that failure."""
    corridor_rate: float = Field(0.5, gt=0, le=1)
    """A cell is named in a corridor rule when this share of successful episodes passed through it."""
    max_cells: int = Field(6, ge=1, le=64)
    """Cells named per rule at most."""


class LimitsConfig(BaseModel):
    """Bounds on one ingested episode (oversized ones are rejected)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_steps: int = Field(4096, ge=1)
    """States per episode."""
    max_grid_side: int = Field(256, ge=1, le=4096)
    """Largest grid_rows / grid_cols."""
    max_key_frames: int = Field(16, ge=0)
    """Key frames per episode."""
    max_frame_bytes: int = Field(4 << 20, ge=1024)
    """Decoded bytes of one frame (a 1024x1024x3 uint8 frame is 3 MiB)."""
    max_entities: int = Field(512, ge=0)
    """Entities per state or per episode."""
    max_shape_batch: int = Field(65536, ge=1)
    """Transitions per ShapeBatch."""
    dedup_window: int = Field(100_000, ge=0)
    """Recent episode ids remembered to drop duplicates (at-least-once senders)."""


class MemoryConfig(BaseModel):
    """Everything the memory role needs; validated at start-up."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    server: ServerConfig = Field(default_factory=lambda: ServerConfig(port=50055))
    """gRPC / metrics endpoint."""
    data_dir: Path | None = None
    """Snapshot directory; None keeps the memory in RAM only (tests)."""
    snapshot_interval_s: float = Field(60.0, gt=0)
    """A snapshot is written this often when something changed (and always on shutdown)."""
    version_reserve_block: int = Field(1000, ge=1)
    """Versions reserved on disk at a time; after a crash versions resume above the reserved bound."""
    coordinator: str | None = None
    """Coordinator address to register with (host:port); None = standalone."""
    atlas: AtlasConfig = Field(default_factory=AtlasConfig)
    """Atlas statistics."""
    shaping: ShapingConfig = Field(default_factory=ShapingConfig)
    """Reward shaping."""
    exemplars: ExemplarConfig = Field(default_factory=ExemplarConfig)
    """Exemplar sets."""
    skills: SkillConfig = Field(default_factory=SkillConfig)
    """Text skills."""
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    """Input bounds."""

    @model_validator(mode="after")
    def _frames_fit_messages(self) -> MemoryConfig:
        if self.limits.max_frame_bytes > self.server.max_message_bytes:
            raise ValueError("limits.max_frame_bytes must not exceed server.max_message_bytes")
        return self
