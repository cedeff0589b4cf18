"""Configuration of the critic role (importable without grpc or torch)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from atlasrl.rpc.config import ServerConfig


class CriticLimits(BaseModel):
    """Bounds on what one request may carry (bigger ones are INVALID_ARGUMENT naming the field)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_side: int = Field(1024, ge=8, le=8192)
    """Largest frame height or width accepted."""
    max_task_chars: int = Field(2048, ge=1, le=1 << 20)
    """Longest task text accepted."""
    max_frames_per_request: int = Field(1024, ge=1, le=1 << 20)
    """Most frames in one Score stream (an episode's worth)."""


class CriticConfig(BaseModel):
    """The critic role: which backend scores frames, how requests are batched, where it runs."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    server: ServerConfig = Field(default_factory=lambda: ServerConfig(port=50057))
    """gRPC / metrics endpoint."""
    coordinator: str | None = None
    """Coordinator address to register with (host:port), so actors find this critic in their assignment; None =
    standalone (actors then name it in actor.critic.address)."""
    backend: Literal["value", "hf", "oracle"] = "value"
    """value: the small convolutional critic with value and done heads (`atlasrl critic train`); hf: a local
    Hugging Face vision-language model directory prompted as VLAC does; oracle: the privileged simulator state
    sent with each frame (tests, and measuring the others)."""
    model: str = ""
    """value: a checkpoint written by `atlasrl critic train` (empty = an untrained critic with seeded random
    weights, so `atlasrl critic --port P` starts without files); hf: the model directory (required)."""
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    """Where the model runs: auto (a CUDA GPU when the process sees one, else the CPU), cpu, cuda or cuda:N."""
    memory_fraction: float | None = Field(None, gt=0, le=1)
    """On a GPU shared with an actor or learner: the share of the GPU's memory this process may allocate
    (torch.cuda.set_per_process_memory_fraction); None = no cap. Ignored on the CPU."""
    max_batch: int = Field(64, ge=1, le=4096)
    """Most frames in one model call; frames of concurrent requests from every actor share calls."""
    max_wait_ms: float = Field(2.0, ge=0, le=1000)
    """Longest the first frame of a batch waits for others before the model runs (0 = run at once)."""
    done_threshold: float = Field(0.95, gt=0, le=1)
    """hf backend: VLAC's done rule, done_probability = 1 when progress reaches this, else progress scaled below it."""
    hf_max_new_tokens: int = Field(8, ge=1, le=256)
    """hf backend: tokens generated for one pair-wise answer (a signed percentage)."""
    seed: int = 0
    """Seed of the untrained value critic's random weights."""
    limits: CriticLimits = Field(default_factory=CriticLimits)
    """Input bounds."""

    @model_validator(mode="after")
    def _check(self) -> CriticConfig:
        if self.backend == "hf" and not self.model:
            raise ValueError("backend=hf needs model: a local Hugging Face vision-language model directory")
        if self.backend == "oracle" and self.model:
            raise ValueError("backend=oracle reads the simulator state sent with each frame; model must be empty")
        if self.model and not Path(self.model).exists():
            raise ValueError(f"model {self.model!r} does not exist")
        return self


class CriticTrainConfig(BaseModel):
    """`atlasrl critic train`: fit the value critic on recorded episodes' env success labels."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    data: list[str] = Field(default_factory=list)
    """Recorded episode files (`atlasrl critic record` output: length-delimited atlasrl.v1.RecordedEpisode)."""
    out: str = "critic.pt"
    """Checkpoint to write (the critic's `model` setting)."""
    epochs: int = Field(30, ge=1, le=10_000)
    """Passes over the epoch's frames (see balance)."""
    balance: bool = True
    """Each epoch: every frame of the successful episodes plus as many frames drawn from the failed ones. Random
    play succeeds rarely (FrozenLake 4x4: ~5%); on all frames the done head saw a positive once in ~200 frames and
    learned none (held-out done F1 0.0 after 3 epochs over 2,000 episodes)."""
    terminal_weight: float = Field(10.0, ge=0, le=1000)
    """Weight of the progress loss on the last frame of a failed episode (each epoch sees all of them). That value is
    the training reward of an episode that ended without the critic's done (VLAC's rule), so it must be right: at
    weight 1 FrozenLake holes scored 0.14 on average (p90 0.35), about an ordinary cell's 0.21, and critic-reward
    training reached 0.73 held-out against the env reward's 0.94."""
    batch_size: int = Field(64, ge=1, le=65536)
    """Frames per optimiser step."""
    lr: float = Field(3e-3, gt=0, le=1)
    """Adam learning rate."""
    gamma: float = Field(0.9, gt=0, le=1)
    """Progress label of frame t of a successful episode of T steps: gamma^(T - t); failed episodes: 0."""
    holdout: float = Field(0.2, ge=0, lt=1)
    """Share of episodes held out to report done precision / recall and value error after training."""
    seed: int = 0
    """Seed of weights, shuffling and the hold-out split."""
    side: int = Field(64, ge=16, le=512)
    """Frames are resized to side x side before the network (stored in the checkpoint)."""

    @field_validator("data", mode="before")
    @classmethod
    def _split(cls, v):
        return [p for p in (s.strip() for s in v.split(",")) if p] if isinstance(v, str) else v


class CriticRecordConfig(BaseModel):
    """`atlasrl critic record`: play episodes with uniformly random valid actions and record every frame."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    env: str = "127.0.0.1:50051"
    """Env server address."""
    env_id: str = "frozenlake"
    """Env id to open."""
    env_config: dict[str, str] = Field(default_factory=dict)
    """Env settings passed to Open."""
    episodes: int = Field(500, ge=1, le=10_000_000)
    """Episodes to record."""
    num_envs: int = Field(16, ge=1, le=1024)
    """Env sessions stepped together."""
    seed_start: int = Field(0, ge=0)
    """First env seed (episodes play consecutive seeds)."""
    out: str = "episodes.critic"
    """Output file."""
