"""reward.source=critic through a real actor (tiny CPU engine), a real env server and a real critic over loopback:
the guideline's termination and reward rules, env success logged beside them, the fallbacks, eval on env done."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from atlasrl.actors.actor import start_actor, stop_actor
from atlasrl.actors.config import ActorConfig, EvalConfig, RewardConfig
from atlasrl.clients.critic import oracle_state
from atlasrl.critic.backends import Backend, Item, Score, oracle_score
from atlasrl.critic.config import CriticConfig
from atlasrl.critic.server import CriticServer
from atlasrl.rpc import ServerConfig

# The actor tests' small FrozenLake settings; their fixtures come in through tests/critic/conftest.py.
from tests.actors.conftest import SMALL_ENV


class AlwaysDone(Backend):
    """A critic that judges every frame done: the env's own done must not matter."""

    name = "always-done"

    def score(self, items: Sequence[Item]) -> list[Score]:
        return [Score(1.0, 1.0) for _ in items]


class Slow(Backend):
    name = "slow"

    def score(self, items: Sequence[Item]) -> list[Score]:
        time.sleep(0.5)
        return [Score(0.0, 0.0) for _ in items]


async def critic_server(backend: Backend | str) -> CriticServer:
    """A real critic server: a backend of the config by name, or a test backend object."""
    if isinstance(backend, str):
        server = CriticServer(CriticConfig(server=ServerConfig(port=0), backend=backend))
    else:
        server = CriticServer(CriticConfig(server=ServerConfig(port=0), backend="oracle"), backend=backend)
    await server.start()
    return server


def config(env: str, critic: str, **reward) -> ActorConfig:
    return ActorConfig(model="tiny", envs=[env], num_envs=4, group_size=2, use_image=False, memory_shaping=False,
                       env_config=dict(SMALL_ENV), reward=RewardConfig(source="critic", critic_address=critic, **reward))


async def play(cfg: ActorConfig, engine, episodes: int, *, until=None, timeout: float = 60):
    parts = await start_actor(cfg, engine=engine)
    got = []

    async def collect(proto, ep) -> None:
        got.append((proto, ep))

    parts.loop.on_episode = collect
    try:
        run = asyncio.create_task(parts.loop.run(max_episodes=episodes))
        if until is None:
            await asyncio.wait_for(run, timeout)
        else:
            t0 = time.monotonic()
            while not until(parts.loop) and time.monotonic() - t0 < timeout:
                await asyncio.sleep(0.02)
            parts.loop.stop()
            await asyncio.wait_for(run, timeout)
    finally:
        await stop_actor(parts)
    return got, parts.loop


def critic_part(turn) -> float:
    return turn.reward - turn.format_reward - turn.shaping_reward


async def test_oracle_critic_rewards_follow_the_rules_and_agree_with_env_success(tiny_engine, env_server):
    critic = await critic_server(backend="oracle")
    try:
        got, loop = await play(config(env_server.address, critic.address), tiny_engine, 12)
    finally:
        await critic.stop(0)
    assert len(got) >= 12
    for proto, ep in got:
        *middle, last = proto.turns
        assert all(critic_part(t) == 0.0 for t in middle)
        if ep.success:     # the oracle's done is the env's success: terminal reward 1.0
            assert ep.critic_done and critic_part(last) == pytest.approx(1.0)
        else:              # a hole or the step cap: the critic's value of the last frame
            expected = oracle_score(oracle_state(ep.last_obs, ep.spec)).progress
            assert not ep.critic_done and critic_part(last) == pytest.approx(expected, abs=1e-6)
        assert sum(t.env_reward for t in proto.turns) == (1.0 if ep.success else 0.0)   # env reward still logged
    stats = loop.critic.stats
    assert stats.agreement["fp"] == stats.agreement["fn"] == 0
    assert stats.agreement["tp"] + stats.agreement["tn"] == len(got)
    assert stats.calls >= sum(len(p.turns) for p, _ in got) and stats.failures == 0


async def test_the_critic_ends_episodes_the_env_would_continue(tiny_engine, env_server):
    critic = await critic_server(backend=AlwaysDone())
    try:
        got, loop = await play(config(env_server.address, critic.address), tiny_engine, 8)
    finally:
        await critic.stop(0)
    for proto, _ep in got:
        assert len(proto.turns) == 1 and critic_part(proto.turns[0]) == 1.0
    # the env's success is logged, never used: a one-step FrozenLake episode cannot have succeeded
    assert not any(ep.success for _, ep in got)
    assert loop.critic.stats.agreement["fp"] == len(got)
    assert loop.critic.stats.precision_recall_f1() == (0.0, 0.0, 0.0)


async def test_a_down_critic_with_drop_episode_trains_nothing_and_counts_it(tiny_engine, env_server):
    cfg = config(env_server.address, "127.0.0.1:1", deadline_s=0.2, fallback="drop_episode")
    got, loop = await play(cfg, tiny_engine, 4, until=lambda lp: lp.dropped >= 8, timeout=30)
    assert got == [] and loop.dropped >= 8
    assert loop.critic.stats.fallbacks["drop_episode"] == loop.dropped
    assert loop.m.dropped.labels("critic_unavailable")._value.get() == loop.dropped


async def test_a_slow_critic_with_env_fallback_finishes_on_env_reward_and_counts_it(tiny_engine, env_server):
    critic = await critic_server(backend=Slow())
    try:
        got, loop = await play(config(env_server.address, critic.address, deadline_s=0.05, fallback="env"),
                               tiny_engine, 4)
    finally:
        await critic.stop(0)
    assert len(got) >= 4
    for proto, ep in got:
        assert ep.reward_fallback
        assert [critic_part(t) for t in proto.turns] == [t.env_reward for t in proto.turns]
    stats = loop.critic.stats
    assert stats.fallbacks["env"] >= len(got) and stats.failures >= len(got)
    assert sum(stats.agreement.values()) == 0       # fallen-back episodes are not the critic's judgement


async def test_eval_uses_the_env_done_only(tiny_engine, env_server):
    from atlasrl.actors.eval import evaluate
    from atlasrl.actors.policy import Policy
    from atlasrl.actors.rollout import env_clients

    cfg = EvalConfig(**{**config(env_server.address, "127.0.0.1:1").model_dump(exclude={"actor_id"}), "episodes": 6})
    policy = Policy(tiny_engine, cfg)
    await policy.start()
    try:
        report = await evaluate(cfg, policy, env_clients(cfg.envs), episodes=6, seed_start=1000)
    finally:
        await policy.close()
    assert report.episodes == 6 and report.dropped == 0
    assert sum(report.causes.values()) == 6 and set(report.causes) <= {"success", "hole", "timeout"}
