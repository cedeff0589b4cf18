"""The run config: the five role configs composed, plus what only a launcher needs.

Each role's config model (``atlasrl/<role>/config.py``) is the one definition of that role's settings and
defaults: ``atlasrl <role>`` reads it (``--config FILE``, ``--set key=value``, flags derived from its fields),
and ``RunConfig`` holds one of each as a section. ``atlasrl up`` and deploy add only the wiring a launcher owns
(addresses, ports, directories, per-process ids; see ``atlasrl/up/plan.py``) and hand every process its section
as ``<name>.yaml``. Presets (``atlasrl/config/presets/*.yaml``) are files that override fields, nothing more.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from atlasrl.actors.config import ActorConfig
from atlasrl.coordinator.config import CoordinatorConfig
from atlasrl.critic.config import CriticConfig
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.learner.config import LearnerConfig
from atlasrl.memory.config import MemoryConfig

TRAIN_SEED_BLOCK = 100_000_000  # training seeds of run.seed s: [s * block, (s + 1) * block)
ACTOR_SEED_STRIDE = 1_000_000    # actor i starts at s * block + i * stride

ROLE_MODELS: dict[str, type[BaseModel]] = {"coordinator": CoordinatorConfig, "envserver": EnvServerConfig,
                                           "memory": MemoryConfig, "learner": LearnerConfig, "actor": ActorConfig,
                                           "critic": CriticConfig}
"""Role name -> its config model: the sections of RunConfig and what `atlasrl <role> --config` reads."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class RunSection(Section):
    """The run as a whole."""

    name: str = Field("run", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
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
    """Base seed: actor i trains on env seeds from seed * 10^8 + i * 10^6; the tiny model (or an action-head
    policy's initial weights, action_head.init_seed) is built with this seed."""
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
    """The policy model, given to the learner and the actors (their ``model`` field)."""

    path: Path | None = None
    """HF model directory; None = the tiny random-weights model (built once into the atlasrl cache)."""
    arch: Literal["qwen2", "qwen2.5-vl"] = "qwen2"
    """Architecture of the tiny model built when ``path`` is None."""
    max_pixels: int | None = Field(None, ge=28 * 28, le=4096 * 4096)
    """The tiny VL model's image budget (its processor's max_pixels); None = 112 x 112. Larger frames are scaled
    down to it, so a frame drawn with one merged token per 28-px cell needs at least its own area (196 x 196 for
    a 7 x 7 egocentric window). Only with arch qwen2.5-vl and no path."""

    @model_validator(mode="after")
    def _max_pixels_needs_tiny_vl(self):
        if self.max_pixels is not None and (self.arch != "qwen2.5-vl" or self.path is not None):
            raise ValueError("model.max_pixels sets the tiny VL model's image budget: it needs model.arch=qwen2.5-vl "
                             "and no model.path (a real model's processor config holds its own)")
        return self


class ProcessesSection(Section):
    """How many processes of each role `atlasrl up` starts (the learner's ranks: learner.nproc)."""

    envservers: int = Field(1, ge=1, le=256)
    """Env server processes."""
    actors: int = Field(1, ge=1, le=1024)
    """Actor processes."""
    memory: bool = True
    """Run the memory service (off: no shaping, no hints, no atlases)."""
    critic: bool = False
    """Run the progress critic (the critic section; docs/critic.md): actors with actor.reward.source=critic are
    wired to it. Its process shares the first actor's GPUs when critic.device is a GPU (critic.memory_fraction)."""
    actor_devices: list[list[str]] = Field(default_factory=list)
    """Host GPU ids of each actor process's engine: entry i for actor-i (e.g. [[4, 5], [6, 7]]: two actors, tensor
    parallel over two GPUs each); empty = every actor gets actor.devices. `up` gives each process only its GPUs
    (CUDA_VISIBLE_DEVICES), the learner learner.devices, env servers envserver.devices, and, once any role has GPUs,
    every other process none."""
    fixed_ports: bool = False
    """Listen on the ports of the role sections (process i of a role: port + i; a port of 0 or unset still takes a
    free one). Off: every process and /metrics endpoint gets a free loopback port, so runs can share a machine."""


    @field_validator("actor_devices", mode="before")
    @classmethod
    def _split_groups(cls, v):
        from atlasrl.devices import check_ids

        return [check_ids(g, f"processes.actor_devices[{i}]") for i, g in enumerate(v or [])]

    def devices_of_actor(self, actor: ActorConfig, i: int) -> list[str]:
        """GPUs of actor process ``i``."""
        return list(self.actor_devices[i]) if self.actor_devices else list(actor.devices)


class RunConfig(Section):
    """Everything `atlasrl up` needs: the run, the model, process counts, and one config per role."""

    run: RunSection = Field(default_factory=RunSection)
    model: ModelSection = Field(default_factory=ModelSection)
    processes: ProcessesSection = Field(default_factory=ProcessesSection)
    coordinator: CoordinatorConfig = Field(default_factory=CoordinatorConfig)
    envserver: EnvServerConfig = Field(default_factory=EnvServerConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    actor: ActorConfig = Field(default_factory=ActorConfig)
    critic: CriticConfig = Field(default_factory=CriticConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        a, lr = self.actor, self.learner
        self._check_devices()
        if a.num_envs % a.group_size:
            raise ValueError(f"actor.num_envs ({a.num_envs}) must be a multiple of actor.group_size "
                             f"({a.group_size}): a group's episodes run side by side")
        if self.coordinator.max_staleness != lr.max_staleness:
            raise ValueError(f"coordinator.max_staleness ({self.coordinator.max_staleness}) and learner.max_staleness "
                             f"({lr.max_staleness}) must agree: the coordinator holds actors back by the lag the learner "
                             "accepts (set both)")
        if a.max_learner_backlog and a.max_learner_backlog < lr.batch_episodes:
            raise ValueError(f"actor.max_learner_backlog ({a.max_learner_backlog}) is below learner.batch_episodes "
                             f"({lr.batch_episodes}): actors would wait for a batch the learner never gets (0 = no limit)")
        if a.reward.source == "critic" and not (self.processes.critic or a.reward.critic_address):
            raise ValueError("actor.reward.source=critic needs a critic: processes.critic=true (up starts one from the "
                             "critic section) or actor.reward.critic_address")
        if a.reward.source == "critic" and self.processes.memory and a.memory_shaping:
            raise ValueError("actor.reward.source=critic with memory shaping: the memory's potentials are learned from "
                             "env success, which critic-reward training must not use; set actor.memory_shaping=false "
                             "(or processes.memory=false)")
        self._check_action_head()
        train_lo, train_hi = TRAIN_SEED_BLOCK * self.run.seed, TRAIN_SEED_BLOCK * (self.run.seed + 1)
        if train_lo <= self.run.eval_seed_start < train_hi:
            raise ValueError(f"run.eval_seed_start ({self.run.eval_seed_start}) is inside the training seeds of run.seed "
                             f"{self.run.seed} ([{train_lo}, {train_hi})): eval seeds must be held out")
        return self

    def _check_action_head(self) -> None:
        """An action-head run: actor and learner build the same policy (same settings, initial weights from
        run.seed unless action_head.init_seed is given)."""
        a, lr = self.actor, self.learner
        if a.action_head is None and lr.action_head is None:
            return
        if a.action_head is None or lr.action_head is None:
            raise ValueError("actor.action_head and learner.action_head go together: the learner trains the policy the "
                             "actors run (set both, e.g. with a YAML anchor as the reach-flow preset does)")
        differ = a.action_head.differences(lr.action_head)
        if differ:
            raise ValueError(f"actor.action_head and learner.action_head differ in {', '.join(differ)}: the learner "
                             "would score the actors' chunks under another policy (set both)")
        if a.action_head.init_seed is None:
            a.action_head = a.action_head.model_copy(update={"init_seed": self.run.seed})
            lr.action_head = lr.action_head.model_copy(update={"init_seed": self.run.seed})

    def _check_devices(self) -> None:
        """GPUs per process: one group per actor, each big enough for the engine, and no GPU claimed twice by
        processes of different roles unless that role shares on purpose (a learner and an actor on one GPU both
        list it; that is allowed, as on a one-GPU host). Actors never share GPUs with each other."""
        pr, a = self.processes, self.actor
        if pr.actor_devices:
            if a.devices:
                raise ValueError("processes.actor_devices and actor.devices are both set: give the actors' GPUs in one "
                                 "place (actor_devices: per actor process)")
            if len(pr.actor_devices) != pr.actors:
                raise ValueError(f"processes.actor_devices has {len(pr.actor_devices)} GPU groups for "
                                 f"{pr.actors} actor processes (processes.actors): give one per actor")
            for i, group in enumerate(pr.actor_devices):
                if a.tensor_parallel_size > len(group):
                    raise ValueError(f"processes.actor_devices[{i}] has {len(group)} GPUs, fewer than "
                                     f"actor.tensor_parallel_size ({a.tensor_parallel_size})")
                if a.device == "cpu":
                    raise ValueError(f"processes.actor_devices[{i}] gives GPUs to actors with actor.device=cpu")
            seen: dict[str, int] = {}
            for i, group in enumerate(pr.actor_devices):
                for d in group:
                    if d in seen:
                        raise ValueError(f"processes.actor_devices: GPU {d} is given to actor {seen[d]} and actor {i}")
                    seen[d] = i
        elif a.devices and pr.actors > 1:
            raise ValueError(f"actor.devices would give the same GPUs ({','.join(a.devices)}) to all {pr.actors} actor "
                             "processes; use processes.actor_devices, one group per actor")
