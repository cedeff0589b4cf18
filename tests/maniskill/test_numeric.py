"""Numeric actions on ManiSkill (an action-head policy's chunk as ``Action.values``): the same ensemble and
physics as a decoded text chunk, the spec's bounds (clip or refuse), the scripted PickCube grasp succeeding
from numbers alone, and the action-head engine driving PickCube through a real actor and its turn records."""
import numpy as np
import pytest
from maniskill_scripted import CHUNKED, CODEC, H, K, pickcube_chunk

from atlasrl.actors.actor import start_actor, stop_actor
from atlasrl.actors.config import ActorConfig
from atlasrl.actors.eval import evaluate
from atlasrl.actors.rollout import env_clients
from atlasrl.clients.env import EnvClient
from atlasrl.policies.action_head.config import ActionHeadConfig
from atlasrl.rpc import RemoteError

pytestmark = [pytest.mark.maniskill, pytest.mark.asyncio(loop_scope="module")]


async def test_numbers_step_as_the_decoded_text_does(maniskill_server):
    """Two sessions on one seed, one driven by the codec's text, one by the decoded numbers: same physics."""
    async with EnvClient(maniskill_server.address) as client:
        a, spec = await client.open("maniskill:PickCube-v1", dict(CHUNKED), seed=3)
        assert spec.numeric_actions and spec.clip_actions and len(spec.action_low) == spec.action_dim == 7
        b, _ = await client.open("maniskill:PickCube-v1", dict(CHUNKED), seed=3)
        oa, ob = await client.reset(a, seed=3), await client.reset(b, seed=3)
        for _ in range(6):
            text = CODEC.encode(pickcube_chunk(oa.text, H))
            numbers = CODEC.decode(text).actions             # exactly what the env server decodes from the text
            ra, rb = await client.step([(a, text), (b, numbers.astype(np.float32))])
            oa, ob = ra.unwrap(), rb.unwrap()
            assert ob.info["chunk_steps"] == H and ob.info["steps_applied"] == K
            assert oa.text == ob.text and oa.reward == pytest.approx(ob.reward, abs=1e-5) and oa.step == ob.step


async def test_bounds_clip_or_refuse_and_bad_shapes(maniskill_server):
    async with EnvClient(maniskill_server.address) as client:
        h, _ = await client.open("maniskill:PickCube-v1", dict(CHUNKED), seed=0)
        await client.reset(h, seed=0)
        far = np.full((H, 7), 5.0, np.float32)
        clipped = (await client.step([(h, far)]))[0].unwrap()           # clip_actions (default): clipped, stepped
        assert clipped.step == K
        strict, _ = await client.open("maniskill:PickCube-v1", {**CHUNKED, "clip_actions": "false"}, seed=0)
        await client.reset(strict, seed=0)
        [refused] = await client.step([(strict, far)])
        assert isinstance(refused.error, RemoteError) and "step.actions[].values" in str(refused.error)
        assert "does not clip" in str(refused.error)
        [wrong] = await client.step([(strict, np.zeros((H + 1, 7), np.float32))])
        assert "shape" in str(wrong.error)
        ok = (await client.step([(strict, np.zeros((H, 7), np.float32))]))[0].unwrap()   # the env was not stepped
        assert ok.step == K


async def test_scripted_pickcube_succeeds_from_numbers(maniskill_server):
    async with EnvClient(maniskill_server.address) as client:
        h, _ = await client.open("maniskill:PickCube-v1", dict(CHUNKED), seed=1)
        obs = await client.reset(h, seed=1)
        while not (obs.terminated or obs.truncated):
            obs = (await client.step([(h, pickcube_chunk(obs.text, H).astype(np.float32))]))[0].unwrap()
        assert obs.info["success"] is True


async def test_action_head_engine_drives_pickcube_through_an_actor(maniskill_server, tmp_path):
    """The action-head engine (tiny AtlasVLA backbone) acts on PickCube's camera frame through the actor's
    rollout loop: chunks go out as Action.values, every turn is a flow turn the learner can train on."""
    from atlasrl.actors.engines import EngineConfig, make_engine
    from atlasrl.v1 import trajectory_pb2

    ah = ActionHeadConfig(image_size=64, patch_size=8, horizon=H, action_dim=7, steps=2, width=32, heads=2, depth=1,
                          vision_width=32, keypoints=4, noise_std=0.5)
    engine = make_engine(EngineConfig(kind="action_head", model="", action_head=ah, seed=0))
    cfg = ActorConfig(envs=[maniskill_server.address], env_id="maniskill:PickCube-v1", env_config={**CHUNKED, "max_steps": "8"},
                      engine="action_head", action_head=ah, num_envs=2, group_size=2, max_turns=4, use_image=True,
                      memory_hints="none", memory_shaping=False)
    episodes: list = []
    parts = await start_actor(cfg, engine=engine)
    try:
        from atlasrl.actors.rollout import RolloutLoop

        async def keep(ep_proto, ep):
            episodes.append(ep_proto)

        loop = RolloutLoop(cfg, parts.policy, env_clients(cfg.envs), on_episode=keep)
        await loop.run(max_episodes=2)
        report = await evaluate(cfg, parts.policy, env_clients(cfg.envs), episodes=1, seed_start=900_000)
    finally:
        await stop_actor(parts)
    assert len(episodes) == 2 and report.episodes == 1
    for ep in episodes:
        assert len(ep.turns) == 4                                          # 8 physics steps at 2 per decision
        for t in ep.turns:
            assert t.action_mode == trajectory_pb2.ACTION_MODE_FLOW and len(t.logprobs) == ah.steps
            assert not t.response_ids
