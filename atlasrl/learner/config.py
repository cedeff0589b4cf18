"""LearnerConfig: every knob of the learner role, validated at start-up (importable without torch)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from atlasrl.policies.action_head.config import ActionHeadConfig

MiB = 1 << 20
Transport = Literal["stream", "delta", "collective"]


def _default_transports() -> list[Transport]:
    return ["stream", "delta"]



class LearnerConfig(BaseModel):
    """One learner run. The CLI fills it; `main.py` receives it as JSON on every rank."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str = ""
    """HF model directory to start from (ignored when resuming from a checkpoint, which carries the weights); required."""
    nproc: int = Field(1, ge=1, le=1024)
    """Training processes on this host (torchrun ranks, FSDP2): one per GPU; on CPU, gloo ranks."""
    devices: list[str] = Field(default_factory=list)
    """Host GPU ids of this learner's ranks, one per rank (nproc of them; rank i gets cuda:i of these, through
    CUDA_VISIBLE_DEVICES); empty = the GPUs the process inherits."""
    action_head: ActionHeadConfig | None = None
    """Train a continuous action-head policy (backbone + flow expert, docs/action_head.md) instead of the text
    policy in `model`; must equal the actors' engine.action_head."""
    algo: Literal["grpo", "gigpo", "ppo"] = "grpo"
    """GRPO (group-normalised returns, no critic), GiGPO (GRPO plus step advantages over shared states, no critic)
    or PPO (value head, GAE over turns)."""

    # --- serving (rank 0) ---
    host: str = "127.0.0.1"
    """Bind address of the TrajectoryService and WeightService."""
    port: int = Field(0, ge=0, le=65535)
    """gRPC port; 0 picks a free one (printed at start-up)."""
    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Prometheus /metrics port; None disables it."""
    coordinator: str | None = None
    """Coordinator address to register with (host:port); None runs standalone."""
    ready_file: str | None = None
    """Rank 0 writes {"port", "metrics_port", "version"} here as JSON once serving (for launchers and tests)."""
    max_message_bytes: int = Field(64 * MiB, ge=4 * MiB, le=1 << 30)
    """gRPC message-size limit on both directions (an episode with images must fit)."""
    max_sessions_per_client: int | None = Field(None, ge=1)
    """Live streams (Push, Subscribe, Publish) one client may hold at once; None = unlimited."""
    session_idle_timeout_s: float | None = Field(None, gt=0)
    """A client stream (Push, Publish) silent this long ends with DEADLINE_EXCEEDED; None = never."""

    # --- buffer ---
    batch_episodes: int = Field(8, ge=1, le=65536)
    """Train once this many episodes (whole GRPO groups) are buffered."""
    buffer_capacity: int = Field(4096, ge=1)
    """Episodes held at most; a full buffer rejects new ones with RESOURCE_EXHAUSTED (actors retry)."""
    max_staleness: int = Field(4, ge=0)
    """Versions of lag accepted: learner_version - oldest turn version."""
    stale_policy: Literal["drop", "downweight"] = "drop"
    """Episodes over max_staleness are dropped, or kept with weight stale_weight ** (lag - max_staleness)."""
    stale_weight: float = Field(0.5, gt=0, le=1)
    """Per-version weight factor for the downweight policy."""
    group_timeout_s: float = Field(120.0, gt=0)
    """GRPO: a group still incomplete after this long trains with the members it has (>= 2)."""
    dedup_window: int = Field(1_000_000, ge=1)
    """Episode ids remembered for dedup (oldest forgotten first)."""
    max_seq_tokens: int = Field(8192, ge=2)
    """Longest prompt+response of one turn; longer turns are rejected."""

    # --- optimisation ---
    lr: float = Field(1e-5, gt=0)
    """AdamW learning rate (at the start, see lr_decay_updates)."""
    lr_final: float | None = Field(None, gt=0)
    """Learning rate reached after lr_decay_updates updates, linearly; None = lr throughout."""
    lr_decay_updates: int = Field(1000, ge=1)
    """Updates over which the learning rate goes from lr to lr_final (then stays there)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(1.0, gt=0)
    """Global gradient-norm clip."""
    freeze_vision: bool = False
    """Keep a VL model's vision tower (and its merger into the LM) at its loaded weights: only the language model
    learns (verl's freeze_vision_tower). The actors still get every weight. No effect on text-only models."""
    clip_eps: float = Field(0.2, gt=0, lt=1)
    """PPO/GRPO ratio clip: ratios outside [1 - eps, 1 + eps] get no gradient."""
    clip_eps_high: float | None = Field(None, gt=0, lt=10)
    """Upper clip (DAPO clip-higher); None = clip_eps."""
    kl_coef: float = Field(0.0, ge=0)
    """Weight of the k3 KL to the frozen reference policy (0 = no reference model is kept)."""
    entropy_coef: float = Field(0.0, ge=0)
    """Entropy bonus (at the start, see entropy_decay_updates)."""
    entropy_coef_final: float | None = Field(None, ge=0)
    """Entropy bonus reached after entropy_decay_updates updates, linearly; None = entropy_coef throughout."""
    entropy_decay_updates: int = Field(1000, ge=1)
    """Updates over which the entropy bonus goes from entropy_coef to entropy_coef_final (then stays there)."""
    behav_imp_weight_cap: float | None = Field(5.0, gt=1)
    """AReaL decoupled PPO: cap on pi_prox / pi_behaviour (the stale-sample correction); None disables the correction."""
    recompute_proximal: bool = True
    """Recompute the proximal policy's log-probs with the current weights before each update (AReaL);
    off = the behaviour log-probs play the proximal role (plain PPO)."""
    ppo_epochs: int = Field(1, ge=1, le=32)
    """Passes over each batch."""
    minibatches: int = Field(1, ge=1, le=1024)
    """Optimizer steps per epoch (episodes split evenly)."""
    grpo_std_normalize: bool = True
    """GRPO: divide by the group's reward std (False = Dr. GRPO, mean-centred only)."""
    step_adv_weight: float = Field(1.0, ge=0)
    """GiGPO: weight omega of the step advantage added to the episode advantage."""
    step_gamma: float = Field(0.95, ge=0, le=1)
    """GiGPO: discount of the return-to-go compared inside a step group (below 1 favours shorter paths)."""
    gamma: float = Field(1.0, ge=0, le=1)
    """PPO discount between turns."""
    gae_lambda: float = Field(0.95, ge=0, le=1)
    """PPO GAE lambda over turns."""
    value_coef: float = Field(0.5, ge=0)
    """PPO value-loss weight."""
    value_clip: float | None = Field(0.2, gt=0)
    """PPO value clipping around the old value; None disables."""

    # --- execution ---
    micro_batch_tokens: int = Field(4096, ge=16)
    """Token budget of one micro-batch (padded model rows x longest row)."""
    share_rows: bool = True
    """Turns whose log-probs need the same logits (same prompt and images; in choice mode whatever action was
    taken) run as one model row. Exact; off only to measure what it saves (bench/learner.py)."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in backward (less memory, ~30% more compute)."""
    bf16: bool | None = None
    """bf16 mixed precision (fp32 master weights and reductions); None = on with a GPU, off on CPU."""
    seed: int = 0
    """Torch seed."""
    dist_timeout_s: float = Field(1800.0, gt=0)
    """Collective timeout."""
    idle_poll_s: float = Field(2.0, gt=0)
    """Rank 0 tells the other ranks it is still waiting for data this often."""
    max_updates: int | None = Field(None, ge=1)
    """Stop after this many updates (None = until stopped)."""
    sim_update_s: float = Field(0.0, ge=0, le=3600)
    """Simulated accelerator time slept (CPU left free) at the end of every update; 0 = off. Only for benches on
    CPU hosts (bench/async_vs_sync.py), with actor.sim_step_s, to give training a GPU's share of the time against
    generation; never set it for real runs."""

    # --- weights ---
    chunk_bytes: int = Field(4 * MiB, ge=1 * MiB, le=4 * MiB)
    """Size of one weight chunk on the wire (1-4 MiB; larger chunks mean fewer messages per version)."""
    weight_transports: list[Transport] = Field(default_factory=_default_transports, min_length=1)
    """Weight transports offered to actors, each picked by an actor's weight_transport (docs/learner.md#weights):
    stream (full tensors on the gRPC stream), delta (element-wise difference + zstd-1 against the previous version on the same stream,
    a full version on a miss), collective (a torch.distributed broadcast from this rank 0 to the actors, over a
    group on a TCPStore at weight_collective_host:port; versions are still announced on the stream)."""
    weight_collective_host: str | None = None
    """Address the weight group's TCPStore binds and actors are told to reach (collective transport);
    None = host. Actors must reach it and this host's gloo/NCCL ports."""
    weight_collective_port: int = Field(0, ge=0, le=65535)
    """TCPStore port of the weight group; 0 picks a free one (told to actors by WeightService.Negotiate)."""
    weight_collective_backend: Literal["auto", "gloo", "nccl"] = "auto"
    """Backend of the weight group: auto = nccl with CUDA, else gloo. Actors that cannot run it fall back to the stream."""
    weight_collective_timeout_s: float = Field(60.0, gt=0)
    """Group formation and each broadcast give up after this long: the round's members are evicted to the stream
    and training goes on (the training loop waits for a round)."""
    weight_collective_bucket_bytes: int = Field(64 * MiB, ge=1 * MiB, le=1 << 30)
    """Consecutive tensors smaller than this are packed into one broadcast of at most this size."""
    wire_dtype: Literal["bf16", "fp32"] = "bf16"
    """dtype of published weights."""
    publish_token: str | None = None
    """Token a remote WeightService.Publish must present; None disables remote Publish."""

    # --- checkpoints ---
    ckpt_dir: str | None = None
    """Checkpoint directory; resumes from its latest checkpoint when one exists."""
    ckpt_every: int = Field(50, ge=1)
    """Save every this many updates (and at shutdown)."""
    ckpt_keep: int = Field(2, ge=1)
    """Checkpoints kept."""
    ledger: bool = True
    """With ckpt_dir: keep the episode ledger (ckpt_dir/ledger.sqlite). An episode is acknowledged only once it is
    on disk, so a learner crash loses none and re-trains none, and a restart never reuses a published version."""

    @field_validator("devices", mode="before")
    @classmethod
    def _split_devices(cls, v):
        from atlasrl.devices import check_ids

        return check_ids(v, "devices")

    @model_validator(mode="after")
    def _check(self) -> LearnerConfig:
        if self.devices and len(self.devices) != self.nproc:
            raise ValueError(f"nproc ({self.nproc}) must equal the {len(self.devices)} GPUs in devices "
                             f"({','.join(self.devices)}): one rank per GPU")
        if self.clip_eps_high is not None and self.clip_eps_high < self.clip_eps:
            raise ValueError(f"clip_eps_high ({self.clip_eps_high}) must be >= clip_eps ({self.clip_eps})")
        if self.buffer_capacity < self.batch_episodes:
            raise ValueError(f"buffer_capacity ({self.buffer_capacity}) must be >= batch_episodes ({self.batch_episodes})")
        if len(set(self.weight_transports)) != len(self.weight_transports):
            raise ValueError(f"weight_transports lists a transport twice: {self.weight_transports}")
        if self.minibatches > self.batch_episodes:
            raise ValueError(f"minibatches ({self.minibatches}) must be <= batch_episodes ({self.batch_episodes})")
        return self

    def entropy_coef_at(self, version: int) -> float:
        """The entropy bonus of the update that makes ``version + 1``."""
        return _linear(self.entropy_coef, self.entropy_coef_final, version, self.entropy_decay_updates)

    def lr_at(self, version: int) -> float:
        """The learning rate of the update that makes ``version + 1``."""
        return _linear(self.lr, self.lr_final, version, self.lr_decay_updates)

    @property
    def upper_clip(self) -> float:
        return self.clip_eps if self.clip_eps_high is None else self.clip_eps_high


def _linear(start: float, end: float | None, step: int, span: int) -> float:
    """``start`` moved linearly to ``end`` over ``span`` steps, then ``end``; ``start`` throughout when end is None."""
    if end is None:
        return start
    return start + min(1.0, step / span) * (end - start)


STEP_RETURN_ALGOS = ("gigpo",)
"""Algorithms whose memory shaping telescopes in discounted step returns-to-go (``step_gamma``), not in the episode sum."""


def shaping_discount(algo: str, step_gamma: float) -> float:
    """The discount the memory must shape with so that its potential-based rewards telescope in the return
    ``algo`` trains on: GiGPO's step returns-to-go use ``step_gamma``; GRPO's episode sum and PPO (gamma 1) none."""
    return step_gamma if algo in STEP_RETURN_ALGOS else 1.0
