"""Settings of one ManiSkill env instance (OpenRequest.config, all values strings on the wire)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from atlasrl.envserver.base import EnvConfigError


class ManiSkillConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(128, ge=16, le=1024)
    """Side of the square RGB image of every camera, in pixels."""
    grid_size: int = Field(10, ge=2, le=64)
    """Rows and columns of the workspace grid that positions are projected on (for skill-memory atlases)."""
    workspace: tuple[float, float, float, float] = (-0.4, 0.4, -0.4, 0.4)
    """Table area covered by the grid, "x_min,x_max,y_min,y_max" in metres (world frame; rows follow x, columns y)."""
    layout_grid: int = Field(4, ge=1, le=16)
    """Cells per side of the coarse grid whose cells of the initial object placement form layout_key."""
    reward_mode: Literal["dense", "sparse"] = "dense"
    """dense: the task's normalized dense reward (0..1 per step); sparse: 1 on success, else 0."""
    control_mode: str = "pd_ee_delta_pose"
    """ManiSkill controller; the default moves the end effector by a delta pose per step."""
    action_chunk: int = Field(1, ge=1, le=32)
    """H: most primitive steps one action text may hold (chunks of H steps are H*D integers)."""
    execute_steps: int = Field(0, ge=0, le=32)
    """Primitive steps executed per action text (a decision), at most action_chunk: 0 = every step of the chunk
    (open-loop chunks, no overlap); 1 = VLA-0 (a decision every step, each step the ensemble of up to H chunks);
    k in between: the next k steps, each the ensemble of the chunks that cover it."""
    ensemble_decay: float = Field(0.0, ge=-5, le=5)
    """Temporal-ensemble weights over the chunks predicting a step: w_i = exp(-decay*i), i = 0 the oldest.
    0 = VLA-0's plain mean; > 0 favours older predictions (ACT: 0.01); < 0 favours the newest."""
    render: Literal["decision", "every_step"] = "decision"
    """decision: physics steps through a decision's steps and only the frame the model sees next is rendered;
    every_step: render after every primitive step (discarding all but the last frame: the baseline of the bench)."""
    max_steps: int = Field(0, ge=0, le=100_000)
    """Primitive steps per episode before truncation; 0 = the task's registered limit."""
    invalid_action_penalty: float = Field(-0.1, ge=-10, le=0)
    """Reward of a turn whose text does not parse (the robot holds still for one step)."""
    render_backend: Literal["auto", "cpu", "gpu"] = "auto"
    """auto: SAPIEN's GPU renderer when CUDA is visible, else the CPU (software Vulkan) device."""
    clip_actions: bool = True
    """Numeric actions (``Action.values``, an action-head policy's chunk) outside the controller's bounds are
    clipped to them, as ManiSkill's controllers do; false = refused with INVALID_ARGUMENT. A Gaussian policy's
    samples leave any box now and then, and refusing them would end its episodes."""

    @model_validator(mode="after")
    def _check_execute_steps(self):
        if self.execute_steps > self.action_chunk:
            raise ValueError(f"execute_steps ({self.execute_steps}) must be at most action_chunk ({self.action_chunk})")
        return self

    @field_validator("workspace", mode="before")
    @classmethod
    def _parse_workspace(cls, v):
        if isinstance(v, str):
            parts = [p for p in v.replace(" ", "").split(",") if p]
            if len(parts) != 4:
                raise ValueError("workspace must be 'x_min,x_max,y_min,y_max'")
            return tuple(parts)
        return v

    @field_validator("workspace", mode="after")
    @classmethod
    def _check_workspace(cls, v):
        x0, x1, y0, y1 = v
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"workspace needs x_max > x_min and y_max > y_min, got {v}")
        return v

    @classmethod
    def from_strings(cls, config: dict[str, str]) -> ManiSkillConfig:
        """Validate OpenRequest.config; errors name the key (EnvConfigError)."""
        try:
            return cls.model_validate(dict(config))
        except ValidationError as e:
            first = e.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "config"
            known = ", ".join(cls.model_fields)
            raise EnvConfigError(f"maniskill config '{key}': {first['msg']} (keys: {known})") from None

    def as_strings(self) -> dict[str, str]:
        out = {k: str(v) for k, v in self.model_dump().items()}
        out["workspace"] = ",".join(f"{v:g}" for v in self.workspace)
        return out
