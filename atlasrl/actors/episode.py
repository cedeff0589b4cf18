"""Turn and episode records of one env session, and their proto forms.

    ep = EpisodeBuffer(episode_id, group_id=..., seed=..., group_size=G, spec=spec, first_obs=obs)
    ep.add_turn(turn, next_obs)        # a TurnRecord and the env's answer to its action
    ep.done                            # env terminated/truncated (or the turn cap hit)
    ep.to_proto(actor_id)              # atlasrl.v1.Episode for the learner
    ep.to_memory_record()              # atlasrl.v1.EpisodeRecord for MemoryService.Ingest

Plain data: nothing here talks to the network.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from atlasrl.v1 import env_pb2, memory_pb2, trajectory_pb2

MAX_KEY_FRAMES = 4


@dataclass
class EpisodeBuffer:
    episode_id: str
    group_id: str
    seed: int
    group_size: int
    spec: env_pb2.EnvSpec
    first_obs: env_pb2.Observation
    turns: list[trajectory_pb2.TurnRecord] = field(default_factory=list)
    observations: list[env_pb2.Observation] = field(default_factory=list)  # answer to each turn's action
    max_turns: int = 64
    critic_done: bool = False       # reward.source=critic: the critic judged the task done (critic_reward.py)
    reward_fallback: bool = False   # reward.source=critic: the critic failed; finishing on the env's reward
    bootstrap: trajectory_pb2.TurnRecord | None = None  # PPO's V(s_T) prompt for a cut episode (Episode.bootstrap)

    @property
    def last_obs(self) -> env_pb2.Observation:
        return self.observations[-1] if self.observations else self.first_obs

    @property
    def done(self) -> bool:
        return self.critic_done or self._ended(self.last_obs, len(self.turns))

    def ends_with(self, next_obs: env_pb2.Observation) -> bool:
        """Whether recording a turn that led to ``next_obs`` ends the episode (``done`` after it, a critic aside)."""
        return self._ended(next_obs, len(self.turns) + 1)

    def _ended(self, obs: env_pb2.Observation, turns: int) -> bool:
        return obs.terminated or obs.truncated or turns >= self.max_turns

    @property
    def cut(self) -> bool:
        """Ended by a time limit or the turn cap, not by reaching a terminal state: its last state has a value."""
        obs = self.last_obs
        return not obs.terminated and (obs.truncated or len(self.turns) >= self.max_turns)

    @property
    def success(self) -> bool:
        return bool(self.last_obs.success)

    @property
    def terminal_cause(self) -> str:
        obs = self.last_obs
        cause = obs.info.fields.get("terminal_cause") if obs.HasField("info") else None
        if cause is not None and cause.string_value:
            return cause.string_value
        if obs.success:
            return "success"
        if obs.truncated or len(self.turns) >= self.max_turns:
            return "timeout"
        return "failure" if obs.terminated else ""

    @property
    def total_reward(self) -> float:
        return float(sum(t.reward for t in self.turns))

    def add_turn(self, turn: trajectory_pb2.TurnRecord, next_obs: env_pb2.Observation) -> None:
        self.turns.append(turn)
        self.observations.append(next_obs)

    def to_proto(self, actor_id: str) -> trajectory_pb2.Episode:
        versions = sorted({v for t in self.turns for v in (t.token_versions or [t.policy_version])})
        return trajectory_pb2.Episode(
            episode_id=self.episode_id,
            actor_id=actor_id,
            group_id=self.group_id,
            policy_versions=versions,
            turns=self.turns,
            success=self.success,
            env_id=self.spec.env_id,
            family=self.spec.family,
            layout_key=self.first_obs.layout_key,
            seed=self.seed,
            terminal_cause=self.terminal_cause,
            group_size=self.group_size,
            bootstrap=self.bootstrap,
        )

    def to_memory_record(self) -> memory_pb2.EpisodeRecord:
        """The episode as the skill memory needs it: agent cells, moving entities, key frames."""
        states = [self.first_obs] + self.observations
        steps = [memory_pb2.MemoryStep(agent=self.first_obs.agent, entities=_moving(self.first_obs))]
        for turn, obs in zip(self.turns, self.observations):
            steps.append(
                memory_pb2.MemoryStep(agent=obs.agent, entities=_moving(obs), action=turn.action_text, reward=obs.reward)
            )
        frames = []
        for idx in _key_frame_steps(len(states)):
            if states[idx].images:
                frames.append(memory_pb2.MemoryKeyFrame(step=idx, image=states[idx].images[0]))
        return memory_pb2.EpisodeRecord(
            episode_id=self.episode_id,
            family=self.spec.family,
            layout_key=self.first_obs.layout_key,
            grid_rows=self.spec.grid_rows,
            grid_cols=self.spec.grid_cols,
            steps=steps,
            entities=[e for e in self.first_obs.entities if e.kind != "agent"],
            terminal_cause=self.terminal_cause,
            success=self.success,
            truncated=self.cut,
            key_frames=frames,
        )


_MOVABLE = {"box", "object", "ee"}


def _moving(obs: env_pb2.Observation) -> list[env_pb2.Entity]:
    return [e for e in obs.entities if e.kind in _MOVABLE]


def _key_frame_steps(n_states: int) -> list[int]:
    """The first and last state plus evenly spaced ones between, at most MAX_KEY_FRAMES."""
    if n_states <= MAX_KEY_FRAMES:
        return list(range(n_states))
    step = (n_states - 1) / (MAX_KEY_FRAMES - 1)
    return sorted({round(i * step) for i in range(MAX_KEY_FRAMES)})
