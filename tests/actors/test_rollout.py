"""A real actor (tiny CPU engine) against real env servers and the learner's real services, over loopback gRPC."""
from __future__ import annotations

import asyncio
import math
from collections import defaultdict

import numpy as np

from atlasrl.actors.actor import start_actor, stop_actor
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.server import EnvServer
from atlasrl.v1 import trajectory_pb2

from .conftest import actor_config


def check_episode(ep: trajectory_pb2.Episode, valid_actions: set[str], max_steps: int = 6) -> None:
    assert ep.episode_id and ep.group_id and ep.group_size == 2 and ep.family == "frozenlake"
    assert 1 <= len(ep.turns) <= max_steps
    assert ep.terminal_cause in {"success", "hole", "timeout"}
    assert ep.success == (ep.terminal_cause == "success")
    assert list(ep.policy_versions) == sorted({t.policy_version for t in ep.turns})
    for t in ep.turns:
        n = len(t.response_ids)
        assert n >= 2 and len(t.logprobs) == n and len(t.loss_mask) == n and all(t.loss_mask)
        assert all(math.isfinite(lp) and lp <= 0 for lp in t.logprobs)
        assert t.prompt_ids and t.action_mode == trajectory_pb2.ACTION_MODE_CHOICE
        assert len(t.choices) == 4 and list(t.response_ids) in [list(c.ids) for c in t.choices]
        assert t.action_text in valid_actions and t.action_valid
        assert t.reward == t.env_reward + t.format_reward + t.shaping_reward
        assert t.temperature == 1.0
    # Choice mode: the only chance events are the choices; a full episode's reward is the env's.
    assert sum(t.env_reward for t in ep.turns) == (1.0 if ep.success else 0.0)


async def test_multi_env_rollout_two_servers_groups_versions(tiny_engine, env_server, learner):
    second = EnvServer(EnvServerConfig(port=0, workers=0))
    await second.start()
    cfg = actor_config(envs=[env_server.address, second.address], learner=learner.address, max_staleness=8)
    parts = await start_actor(cfg, engine=tiny_engine)
    original = {k: v.detach().clone() for k, v in tiny_engine.policy.model.named_parameters()}
    try:
        run = asyncio.create_task(parts.loop.run(max_episodes=16))
        while parts.loop.finished < 4:
            await asyncio.sleep(0.01)
        # The learner publishes version 1 mid-run: the actor must swap it in between batches.
        named = {k: (v.detach().numpy() * 0.5).astype(np.float32) for k, v in tiny_engine.policy.model.named_parameters()}
        await learner.publish(1, named)
        await asyncio.wait_for(run, 120)
        await parts.sender.flush(20)
    finally:
        await stop_actor(parts)
        await second.stop(0)
        version_after = tiny_engine.version
        tiny_engine.update_weights(0, original.items())  # the engine is shared by the session's tests
    eps = learner.episodes()
    assert len(eps) >= 16 and len({e.episode_id for e in eps}) == len(eps)
    for ep in eps:
        check_episode(ep, {"Up", "Down", "Left", "Right"})
    groups = defaultdict(list)
    for ep in eps:
        groups[ep.group_id].append(ep)
    assert all(len(g) <= 2 and len({e.seed for e in g}) == 1 for g in groups.values())
    assert sum(len(g) == 2 for g in groups.values()) >= 6
    versions = {t.policy_version for ep in eps for t in ep.turns}
    assert versions == {0, 1} and version_after == 1
    # Turns after the swap were generated with the new weights: once a version-1 turn appears, no version-0 follows.
    for ep in eps:
        tags = [t.policy_version for t in ep.turns]
        assert tags == sorted(tags)
    assert parts.loop.dropped == 0 and parts.loop.env_steps == sum(len(e.turns) for e in eps) + _unfinished_turns(parts)


def _unfinished_turns(parts) -> int:
    return sum(len(s.episode.turns) for s in parts.loop.slots if s.episode is not None)


async def test_metrics_exposed(tiny_engine, env_server, learner):
    import urllib.request

    from atlasrl.rpc import ServerConfig

    cfg = actor_config(envs=[env_server.address], learner=learner.address)
    parts = await start_actor(cfg, ServerConfig(port=0, metrics_port=0), engine=tiny_engine)
    try:
        await parts.loop.run(max_episodes=4)
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{parts.server.metrics_port}/metrics").read().decode())
    finally:
        await stop_actor(parts)
    for name in ("atlasrl_actor_env_steps_total", "atlasrl_actor_generated_tokens_total", "atlasrl_actor_episodes_total",
                 "atlasrl_actor_success_rate", "atlasrl_actor_generation_seconds_bucket", "atlasrl_actor_policy_version_lag",
                 "atlasrl_actor_dropped_episodes_total"):
        assert name in text, name
    steps = [line for line in text.splitlines() if line.startswith("atlasrl_actor_env_steps_total ")]
    assert float(steps[0].split()[1]) >= 4


async def test_free_mode_invalid_output_is_a_penalised_noop(tiny_engine, env_server, learner):
    cfg = actor_config(envs=[env_server.address], learner=learner.address, action_mode="free", max_new_tokens=6,
                       max_turns=3)
    parts = await start_actor(cfg, engine=tiny_engine)
    try:
        await parts.loop.run(max_episodes=4)
        await parts.sender.flush(20)
    finally:
        await stop_actor(parts)
    eps = learner.episodes()
    assert len(eps) >= 4
    for ep in eps:
        for t in ep.turns:
            assert t.action_mode == trajectory_pb2.ACTION_MODE_FREE and not t.choices
            assert 1 <= len(t.response_ids) <= 6 and len(t.logprobs) == len(t.response_ids)
            if not t.action_valid:  # a random model writes no <think>/<answer>: no-op, format penalty only
                assert t.action_text == "" and t.format_reward == -0.1 and t.env_reward == 0.0
    invalid = [t for ep in eps for t in ep.turns if not t.action_valid]
    assert invalid, "the random tiny model produced only well-formed answers?"
    # Episodes of no-op turns end at the actor's turn cap, reported as a timeout, not a success.
    assert all(len(ep.turns) <= 3 for ep in eps)
    assert all(ep.terminal_cause == "timeout" for ep in eps if all(not t.action_valid for t in ep.turns))


async def test_resets_of_ending_episodes_go_out_before_the_turns_are_recorded(tiny_engine, env_server):
    """The reset of a slot whose episode a turn ends is sent with the step's results in hand, before that turn is
    recorded and the episode handed over, so the env server works on it meanwhile (one round trip less on the
    turn's path), and the resets a turn needs on one server go in one ResetBatch message. Seeds and groups stay
    as the schedule hands them out: each episode plays the seed its reset asked for, and a group's members share
    it."""
    from atlasrl.actors.policy import Policy
    from atlasrl.actors.rollout import RolloutLoop, env_clients

    cfg = actor_config(envs=[env_server.address], num_envs=4, group_size=2)
    links = env_clients(cfg.envs)
    events: list[tuple[str, int]] = []
    batches: list[int] = []
    real_reset, real_reset_many = links[0].reset, links[0].reset_many

    async def reset(handle, seed=None):
        events.append(("reset", seed))
        return await real_reset(handle, seed)

    async def reset_many(resets):
        resets = list(resets)
        batches.append(len(resets))
        events.extend(("reset", seed) for _, seed in resets)
        results = await real_reset_many(resets)
        assert all(r.error is None for r in results)
        return results

    links[0].reset, links[0].reset_many = reset, reset_many
    finished = []

    async def on_episode(proto, ep):
        events.append(("episode", ep.seed))
        finished.append(proto)

    loop = RolloutLoop(cfg, Policy(tiny_engine, cfg), links, on_episode=on_episode)
    await asyncio.wait_for(loop.run(max_episodes=12), 120)
    first_handover = events.index(next(e for e in events if e[0] == "episode"))
    assert sum(kind == "reset" for kind, _ in events[:first_handover]) > cfg.num_envs  # a next episode's reset came first
    # after the sessions' first resets, every next episode's reset rode in a batch: one message per turn
    assert sum(kind == "reset" for kind, _ in events) == cfg.num_envs + sum(batches)
    assert max(batches) > 1   # a turn that ended several episodes sent one message for them (deterministic run)
    # every episode played the seed of a reset, in the schedule's order: seed s twice (group_size), then s + 1
    reset_seeds = [seed for kind, seed in events if kind == "reset"]
    assert reset_seeds == sorted(reset_seeds) and all(reset_seeds.count(s) == 2 for s in set(reset_seeds[:-2]))
    groups = defaultdict(set)
    for ep in finished:
        groups[ep.group_id].add(ep.seed)
        assert ep.seed in reset_seeds
    assert all(len(seeds) == 1 for seeds in groups.values())


async def test_an_env_server_that_refuses_reset_batches_gets_one_reset_per_episode(tiny_engine, env_server):
    """Rolling upgrades: a server older than ResetBatch answers it with an error for the whole request (an
    unknown payload). The loop then sends that server one Reset per episode, asks no second time, and every
    episode still plays its scheduled seed."""
    import grpc

    from atlasrl.actors.policy import Policy
    from atlasrl.actors.rollout import RolloutLoop, env_clients
    from atlasrl.rpc import RemoteError

    cfg = actor_config(envs=[env_server.address], num_envs=4, group_size=2)
    links = env_clients(cfg.envs)
    refused: list[int] = []
    seeds: list[int] = []
    real_reset = links[0].reset

    async def old_server_reset_many(resets):
        refused.append(len(list(resets)))
        raise RemoteError(grpc.StatusCode.INVALID_ARGUMENT.value[0], "request 9 has no payload: set one of open, reset, step, close")

    async def reset(handle, seed=None):
        seeds.append(seed)
        return await real_reset(handle, seed)

    links[0].reset_many, links[0].reset = old_server_reset_many, reset
    finished = []

    async def on_episode(proto, ep):
        finished.append(ep)

    loop = RolloutLoop(cfg, Policy(tiny_engine, cfg), links, on_episode=on_episode)
    await asyncio.wait_for(loop.run(max_episodes=10), 120)
    assert len(refused) == 1 and len(finished) >= 10 and loop.dropped == 0
    assert seeds == sorted(seeds) and all(seeds.count(s) == 2 for s in set(seeds[:-2]))
    assert all(ep.seed in seeds for ep in finished)
