"""Action chunks on ManiSkill: the actor's text -> codec -> temporal ensemble -> physics -> success, and
render-at-decision stepping the same physics as rendering every step.

The actor test runs the real pieces: an env server on loopback gRPC, the actor's rollout loop and eval
(prompt building, free-mode parsing, turn records), the env server's codec and ensemble, and the simulator,
which alone decides success. The policy is the scripted PickCube controller (tests/maniskill/maniskill_scripted.py)
behind the actor's engine interface, writing the same VLA-0 integer chunks a model would.
"""
import json

import numpy as np
import pytest
from maniskill_scripted import CHUNKED, CODEC, H, K, ScriptedEngine, pickcube_text

from atlasrl.actors.actor import start_actor, stop_actor
from atlasrl.actors.config import ActorConfig
from atlasrl.actors.eval import evaluate
from atlasrl.actors.metrics import ActorMetrics
from atlasrl.actors.rollout import env_clients
from atlasrl.clients.env import EnvClient
from atlasrl.rpc import RemoteError

pytestmark = [pytest.mark.maniskill, pytest.mark.asyncio(loop_scope="module")]


async def test_scripted_pickcube_succeeds_through_a_real_actor(maniskill_server, tmp_path):
    engine = ScriptedEngine(horizon=H, garbled_calls=1)     # the first decision of both episodes is unparseable
    metrics = ActorMetrics()
    cfg = ActorConfig(envs=[maniskill_server.address], env_id="maniskill:PickCube-v1", env_config=dict(CHUNKED),
                      action_mode="free", num_envs=2, group_size=1, max_turns=50, use_image=True, bare_prompt=False,
                      temperature=0.0)
    parts = await start_actor(cfg, engine=engine)
    try:
        report = await evaluate(cfg, parts.policy, env_clients(cfg.envs), episodes=2, seed_start=0,
                                jsonl=tmp_path / "eval.jsonl", metrics=metrics)
    finally:
        await stop_actor(parts)
    assert report.episodes == 2 and report.successes == 2, report.summary()
    assert report.causes == {"success": 2}
    for line in (tmp_path / "eval.jsonl").read_text().splitlines():
        rec = json.loads(line)
        # Every turn is one decision of H*D integers; physics ran K steps per decision, so the 50-step limit
        # allows at most 25 decisions, and the scripted grasp needs more than a handful.
        assert 8 <= rec["turns"] <= 25 and all(len(a.split()) == H * 7 for a in rec["actions"][1:])
        assert all(CODEC.decode(a).valid for a in rec["actions"][1:])
        assert rec["actions"][0] == ""   # the garbled first turn: the env held for one step (a robot does not pause)
    assert metrics.invalid_actions.labels("format")._value.get() == 2
    assert engine.frames and all(shape == (64, 64, 3) for shape in engine.frames)   # decision frames reached it


async def test_chunk_steps_invalid_text_and_bad_config(maniskill_server):
    async with EnvClient(maniskill_server.address) as client:
        handle, spec = await client.open("maniskill:PickCube-v1", dict(CHUNKED), seed=0)
        assert spec.max_actions_per_turn == H and spec.config["execute_steps"] == str(K)
        obs = await client.reset(handle, seed=0)
        stepped = await client.step_one(handle, pickcube_text(obs.text, H))
        assert stepped.info["action_is_valid"] is True and stepped.info["chunk_steps"] == H
        assert stepped.info["steps_applied"] == K and stepped.step == K
        one = await client.step_one(handle, CODEC.encode(np.zeros((1, 7))))   # a 1-step chunk: the previous
        assert one.info["steps_applied"] == K and one.step == 2 * K            # chunk still covers the 2nd step
        bad = await client.step_one(handle, "up a bit")
        assert bad.info["action_is_valid"] is False and "no integers found" in bad.info["invalid_reason"]
        assert bad.info["steps_applied"] == 1 and bad.step == 2 * K + 1        # the hold: one step
        with pytest.raises(RemoteError, match=r"execute_steps \(5\) must be at most action_chunk \(4\)"):
            await client.open("maniskill:PickCube-v1", {**CHUNKED, "execute_steps": "5"})


async def test_render_at_decision_matches_render_every_step(maniskill_ready):
    """The physics-only steps between decisions give the same states, rewards and success as env.step."""
    from atlasrl.envserver.maniskill import make_env

    runs = {}
    for render in ("every_step", "decision"):
        env = make_env({**CHUNKED, "image_size": "32", "render": render}, 0, "maniskill:PickCube-v1")
        try:
            out = env.text_reset(seed=3)
            trace = []
            for _ in range(6):
                out = env.text_step(pickcube_text(out.text, H))
                trace.append((out.reward, out.step, out.success, [e.position for e in out.entities], out.text))
            runs[render] = (trace, out.images[0])
        finally:
            env.close()
    (every, img_every), (decision, img_decision) = runs["every_step"], runs["decision"]
    for a, b in zip(every, decision):
        assert a[0] == pytest.approx(b[0], abs=1e-6) and a[1:3] == b[1:3] and a[4] == b[4]
        np.testing.assert_allclose(np.array(a[3]), np.array(b[3]), atol=1e-6)
    assert np.abs(img_every.astype(int) - img_decision.astype(int)).mean() < 1.0   # the same scene rendered
