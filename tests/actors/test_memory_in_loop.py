"""Actor + the real memory service: episodes ingested, shaping added to rewards, text skills in prompts."""
from atlasrl.actors.actor import start_actor, stop_actor
from atlasrl.clients.memory import MemoryClient
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.server import MemoryServer
from atlasrl.rpc import ServerConfig

from .conftest import actor_config


async def test_memory_ingest_shaping_and_hints(tiny_engine, env_server, learner):
    memory = MemoryServer(MemoryConfig(server=ServerConfig(port=0)))
    await memory.start()
    try:
        cfg = actor_config(envs=[env_server.address], learner=learner.address, memory=memory.address,
                           memory_hints="text", memory_shaping=True)
        parts = await start_actor(cfg, engine=tiny_engine)
        try:
            await parts.loop.run(max_episodes=24)
            await parts.sender.flush(20)
            await parts.memory.flush(10)
        finally:
            await stop_actor(parts)
        async with MemoryClient(memory.address) as client:
            stats = await client.stats()
    finally:
        await memory.stop(0)
    eps = learner.episodes()
    assert stats.episodes_ingested == parts.loop.finished == len(eps)
    turns = [t for ep in eps for t in ep.turns]
    assert any(t.shaping_reward != 0 for t in turns), "memory shaping never reached a reward"
    assert all(abs(t.reward - (t.env_reward + t.format_reward + t.shaping_reward)) < 1e-9 for t in turns)
    # One frozen Phi per group: every member's shaping telescopes to the same -Phi(s_0) (episodes end terminal or
    # truncated, where Phi = 0), so shaping adds nothing but the same constant to the returns a group compares.
    gamma = MemoryConfig().shaping.gamma
    by_group = {}
    for ep in eps:
        by_group.setdefault(ep.group_id, []).append(sum(gamma**k * t.shaping_reward for k, t in enumerate(ep.turns)))
    assert any(len(v) > 1 for v in by_group.values())
    for sums in by_group.values():
        assert max(sums) - min(sums) < 1e-6, sums   # float32 maps
    prompts = [tiny_engine.tokenizer.decode(t.prompt_ids) for t in turns]
    assert any("Memory: " in p for p in prompts), "no text skill reached a prompt"
