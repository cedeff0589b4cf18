"""Settings of one MiniWorld env instance (OpenRequest.config, all values strings on the wire)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atlasrl.envserver.base import EnvConfigError


class MiniWorldConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    image_size: int = Field(64, ge=16, le=512)
    """Side of the square first-person RGB frame, in pixels."""
    top_view: bool = False
    """Also send the top-down map (agent drawn in) as a second image, camera "top_down"."""
    top_view_size: int = Field(128, ge=16, le=1024)
    """Side of the square top-down image, in pixels (also used for atlas backgrounds)."""
    cell_size: float = Field(1.0, ge=0.1, le=10.0)
    """Side of one workspace-grid cell in metres: positions are binned on this grid for atlases (rows follow z,
    columns x, as in the top view)."""
    max_actions_per_turn: int = Field(4, ge=1, le=32)
    """How many action words one action text may hold ("turn left, move forward" is two)."""
    max_steps: int = Field(0, ge=0, le=100_000)
    """Primitive actions (an invalid turn counts one) before truncation; 0 = the env's own limit."""
    forward_step: float = Field(0.0, ge=0.0, le=2.0)
    """Metres per "move forward"; 0 = the env's default (0.15 m, 0.7 m in the *Fast envs)."""
    turn_step: float = Field(0.0, ge=0.0, le=180.0)
    """Degrees per turn; 0 = the env's default (15, 45 in the *Fast envs)."""
    domain_rand: bool = False
    """MiniWorld's domain randomisation (lighting, textures, step sizes drawn per episode from the seed)."""
    text_mode: Literal["none", "pose"] = "none"
    """"none": the instruction and the last turn's outcome only (the state is in the frame); "pose": also the
    agent's workspace cell and heading, and the goal's cell."""
    success_reward: float = Field(1.0, ge=-1e6, le=1e6)
    """Reward of the action that reaches the goal (MiniWorld's own 1 - 0.2 t/T is replaced by this)."""
    step_penalty: float = Field(0.0, ge=-1e6, le=1e6)
    """Reward added for every primitive action."""
    invalid_penalty: float = Field(-0.1, ge=-1e6, le=1e6)
    """Reward added for a turn whose text does not parse (nothing moves; it counts one step)."""
    max_collisions: int = Field(0, ge=0, le=100_000)
    """End the episode with terminal cause "collisions" after this many blocked forward moves; 0 = never."""
    stall_steps: int = Field(0, ge=0, le=100_000)
    """End the episode with terminal cause "stalled" after this many consecutive steps in one workspace cell
    (turning in place, walking into a wall); 0 = never. Memory atlases then mark where agents get stuck."""

    @classmethod
    def from_strings(cls, config: dict[str, str]) -> MiniWorldConfig:
        """Validate OpenRequest.config; errors name the key (EnvConfigError)."""
        try:
            return cls.model_validate(dict(config))
        except ValidationError as e:
            first = e.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "config"
            known = ", ".join(cls.model_fields)
            raise EnvConfigError(f"miniworld config '{key}': {first['msg']} (keys: {known})") from None

    def as_strings(self) -> dict[str, str]:
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.model_dump().items()}
