"""The typed run config: one section per role, each field documented and bounded.

Sections describe *how `atlasrl up` (and deploy) launch each role*; the roles
validate their own finer settings at their start-up, and anything this schema
does not model can be passed through a section's ``args`` list of CLI flags.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TRAIN_SEED_BLOCK = 100_000_000  # training seeds of run.seed s: [s * block, (s + 1) * block)
ACTOR_SEED_STRIDE = 1_000_000    # actor i starts at s * block + i * stride


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSection(Section):
    """The run as a whole."""

    name: str = Field("frozenlake-tiny", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    """Run name; the run directory is ``<runs_dir>/<name>-<timestamp>``."""
    runs_dir: Path = Path("runs")
    """Parent directory of run directories."""
    run_dir: Path | None = None
    """Exact run directory (overrides runs_dir/name); reusing one resumes from its checkpoints and coordinator state."""
    duration_s: float = Field(600.0, ge=0)
    """Stop training after this many seconds (0 = no limit)."""
    max_env_steps: int = Field(0, ge=0)
    """Stop training after this many env steps in total (0 = no limit)."""
    target_success: float = Field(0.0, ge=0, le=1)
    """Stop early once the rolling training success rate reaches this (0 = never)."""
    seed: int = Field(0, ge=0)
    """Base seed; roles derive theirs from it."""
    eval_episodes: int = Field(128, ge=0, le=100_000)
    """Episodes of the held-out eval run before training (random-policy baseline) and after (0 = skip)."""
    eval_temperature: float = Field(1.0, ge=0, le=10)
    """Sampling temperature of the eval: 1.0 = the policy as it acts in training, 0 = greedy."""
    eval_seed_start: int = Field(1_000_000_000, ge=0)
    """First held-out env seed of the eval. Training seeds of actor i start at seed * 10^8 + i * 10^6."""
    restart_on_failure: bool = True
    """Restart a role process that exits with an error."""
    max_restarts: int = Field(5, ge=0, le=1000)
    """Restarts allowed per role process before the run is aborted."""
    stop_timeout_s: float = Field(15.0, gt=0, le=600)
    """On shutdown, time given to each role to exit after SIGTERM before it is killed."""
    display: bool = True
    """Show the live progress display (off: one progress line every few seconds)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of every role (their logs go to <run_dir>/logs/<role>.log)."""
    secure: bool = False
    """TLS with client certificates (mTLS) and role-scoped tokens on every role and every connection of the run: a dev
    CA, certificates and one token file per role are generated into <run_dir>/pki at start. Off: plaintext on loopback."""


class ModelSection(Section):
    """The policy model."""

    path: Path | None = None
    """HF model directory; None = the tiny random-weights model (built once into the atlasrl cache)."""
    arch: Literal["qwen2", "qwen2.5-vl"] = "qwen2"
    """Architecture of the tiny model built when ``path`` is None."""


class CoordinatorSection(Section):
    """Coordinator role."""

    port: int = Field(0, ge=0, le=65535)
    """gRPC port (0 = a free one)."""
    metrics_port: int = Field(0, ge=0, le=65535)
    """/metrics port (0 = a free one)."""
    lease_ttl_s: float = Field(5.0, gt=0.1, le=3600)
    """Members silent this long are declared dead and their work reassigned."""
    max_staleness: int = Field(2, ge=0)
    """Actors lagging more policy versions than this wait for new weights (also the learner's episode limit)."""
    history_interval_s: float = Field(1.0, gt=0.05, le=3600)
    """Sampling period of the progress curves."""


class RoleSection(Section):
    port: int = Field(0, ge=0, le=65535)
    """gRPC port of the first process (0 = free ports); process i uses port + i."""
    metrics_port: int = Field(0, ge=0, le=65535)
    """/metrics port of the first process (0 = free ports)."""
    args: list[str] = Field(default_factory=list)
    """Extra CLI flags passed verbatim to the role command (settings this schema does not model)."""


class EnvServerSection(RoleSection):
    """Env server role."""

    count: int = Field(1, ge=1, le=256)
    """Env server processes."""
    env: str = Field("frozenlake", min_length=1)
    """Env id served (frozenlake, sokoban, maniskill:<Task>)."""
    max_envs: int = Field(64, ge=1, le=100_000)
    """Live env instances per server; offered to the coordinator as this server's capacity."""
    workers: int = Field(0, ge=0, le=1024)
    """Worker processes stepping envs (0 = threads in the server process: right for grid envs)."""
    env_config: dict[str, str] = Field(default_factory=lambda: {"text_mode": "relative"})
    """Env settings passed by actors when opening sessions."""


class MemorySection(RoleSection):
    """Visual skill memory role."""

    enabled: bool = True
    """Run the memory service (off: no shaping, no hints)."""
    shaping: bool = True
    """Actors add the memory's potential-based shaping to their rewards (off: the memory still ingests episodes,
    draws its atlases and serves hints)."""


class LearnerSection(RoleSection):
    """Learner role."""

    algo: Literal["grpo", "gigpo", "ppo"] = "gigpo"
    """Policy-gradient algorithm. GiGPO by default: its per-turn credit (turns that stood on the same state are
    compared by where they led) is what lets a multi-turn policy learn within minutes (GRPO's one advantage per
    episode: about half the success in the same time)."""
    nproc: int = Field(1, ge=1, le=1024)
    """Training processes (torchrun, FSDP2)."""
    lr: float = Field(1e-3, gt=0, le=1)
    """AdamW learning rate (the tiny model starts from random weights: higher than for a pretrained VLM)."""
    lr_final: float | None = Field(1e-4, gt=0, le=1)
    """Learning rate reached after lr_decay_updates, linearly (None = lr throughout; CleanRL anneals to 0). At a
    constant 1e-3 the tiny policy kept jittering late in the run (training success 0.70-0.93 between minutes)."""
    lr_decay_updates: int = Field(700, ge=1, le=10_000_000)
    """Updates of that decay. The default run makes ~1,000-1,200 in its 600 s, so lr is at its floor for the
    second half; decaying over 1,200 scored 0.90 / 0.91 / 0.80 on seeds 0-2 against 0.93 / 0.91 / 0.95
    (docs/results/2026-12-06-frozenlake-default-run.md)."""
    batch_episodes: int = Field(16, ge=1, le=1_000_000)
    """Train once this many episodes (whole groups) arrived."""
    step_gamma: float = Field(0.95, ge=0, le=1)
    """GiGPO discount of the returns compared per state; also the memory's shaping discount, so that the shaping
    terms of an episode telescope exactly in those returns (a mismatch pays for lingering near high potential)."""
    entropy_coef: float = Field(0.3, ge=0, le=10)
    """Entropy bonus. GiGPO's per-state credit otherwise makes the tiny policy deterministic within ~100 updates,
    before it has learned to read every neighbour, and a deterministic memoryless policy loops on some maps
    (in-process probe, 3 seeds x 300 s: 0.2 gave held-out success 0.72-0.97, 0.3 gave 0.81-0.88). 0.2 in `atlasrl up`
    (one learner batch admitted): 0.91 for seeds 0 and 2, but seed 1 turned deterministic by update ~200 (token
    entropy 0.13) and its training success fell from 0.56 to 0.2-0.45 until it was stopped at 430 s."""
    entropy_coef_final: float | None = Field(None, ge=0, le=10)
    """Entropy bonus reached after entropy_decay_updates (linear decay; None = entropy_coef throughout). Not by
    default: decaying 0.3 -> 0.05 over 600 updates turned the tiny policy deterministic below ~0.14 (token entropy
    0.25 -> 0.05 within 10 updates) and it collapsed into loops (held-out 0.49 against 0.84 at a constant 0.3)."""
    entropy_decay_updates: int = Field(600, ge=1, le=10_000_000)
    """Updates of that decay."""


class ActorSection(RoleSection):
    """Actor role."""

    count: int = Field(1, ge=1, le=1024)
    """Actor processes."""
    num_envs: int = Field(16, ge=1, le=4096)
    """Env sessions per actor."""
    group_size: int = Field(4, ge=1, le=1024)
    """GRPO group size."""
    action_mode: Literal["choice", "free"] = "choice"
    """choice: pick one of the valid actions; free: write the action as text."""
    engine: Literal["transformers", "vllm"] = "transformers"
    """Generation engine."""
    memory_hints: Literal["none", "text", "overlay", "both"] = "none"
    """Memory advice in the prompt. none by default: a random-weights tiny model cannot read advice yet (it learns
    from the memory's reward shaping instead); text/overlay for pretrained VLMs."""
    context_turns: int = Field(1, ge=0, le=64)
    """Earlier turns (observation + answer) in each prompt, in training and held-out eval alike. One lets the
    memoryless tiny policy see where it came from, which detours and loop escapes need (seed 0, 600 s: held-out
    0.94 / 0.89 on 512 other maps, against 0.87 / 0.87 with none)."""
    max_learner_backlog: int | None = Field(None, ge=0, le=1_000_000)
    """Each actor starts no new GRPO group while this many episodes are untrained (learner buffer, unsent, being
    played); None = learner.batch_episodes, 0 = never wait. One learner batch keeps training near on-policy: with two
    batches (32) the episodes trained may lag 2 policy versions instead of 1, and seed 2's training success stalled at
    0.6-0.75 (held-out 0.66) where one batch reached 0.94 by 180 s (held-out 0.95)."""
    bare_prompt: bool | None = None
    """Empty system message (no role line, no env instruction), the observation alone. None = on for the tiny
    random-weights model (model.path unset), which reads none of that text and spends half its CPU on it, off for a
    checkpoint at model.path."""
    nice: int = Field(10, ge=0, le=19)
    """CPU priority increment of actor processes: on a small machine the learner should win the cores
    (generation only runs ahead into staleness otherwise). 0 on dedicated actor hosts."""
    spool: bool = True
    """Keep each actor's unacked episodes in <run_dir>/spool/<actor>.sqlite and re-send them when the actor is
    restarted (the learner drops repeats). Off: the spool records episode ids and outcomes only, and episodes
    unacked when an actor dies are counted lost (reason actor_restarted). Either way every episode's outcome
    (acked, refused, lost) is in that file."""


class RunConfig(Section):
    """Everything `atlasrl up` needs, one section per role."""

    def max_learner_backlog(self) -> int:
        """actor.max_learner_backlog resolved: None = one learner batch."""
        b = self.actor.max_learner_backlog
        return self.learner.batch_episodes if b is None else b

    def bare_prompt(self) -> bool:
        """actor.bare_prompt resolved: None = on for the tiny random-weights model only."""
        return self.model.path is None if self.actor.bare_prompt is None else self.actor.bare_prompt

    run: RunSection = Field(default_factory=RunSection)
    model: ModelSection = Field(default_factory=ModelSection)
    coordinator: CoordinatorSection = Field(default_factory=CoordinatorSection)
    envserver: EnvServerSection = Field(default_factory=EnvServerSection)
    memory: MemorySection = Field(default_factory=MemorySection)
    learner: LearnerSection = Field(default_factory=LearnerSection)
    actor: ActorSection = Field(default_factory=ActorSection)

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        if self.actor.num_envs % self.actor.group_size:
            raise ValueError(f"actor.num_envs ({self.actor.num_envs}) must be a multiple of actor.group_size "
                             f"({self.actor.group_size}): a group's episodes run side by side")
        train_lo, train_hi = TRAIN_SEED_BLOCK * self.run.seed, TRAIN_SEED_BLOCK * (self.run.seed + 1)
        if train_lo <= self.run.eval_seed_start < train_hi:
            raise ValueError(f"run.eval_seed_start ({self.run.eval_seed_start}) is inside the training seeds of run.seed "
                             f"{self.run.seed} ([{train_lo}, {train_hi})): eval seeds must be held out")
        return self
