"""Numeric actions over real gRPC: the reach env through the compliance suite, Action.values accepted,
bad tensors refused with INVALID_ARGUMENT naming the field, clipping only where the spec says so."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from atlasrl import codec
from atlasrl.clients.env import EnvClient
from atlasrl.rpc import RemoteError
from atlasrl.v1 import env_pb2, tensor_pb2
from tests.envserver.compliance import EnvServiceCompliance

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
SMALL = {"image_size": "32", "chunk": "4", "max_turns": "3"}


class TestReachService(EnvServiceCompliance):
    env_id = "reach"
    config = SMALL
    valid_action = "0.5 0.5, -0.5 0.25"
    invalid_action = "Jump around"


@pytest.fixture
async def reach(start_server):
    server = await start_server(workers=1)        # a worker process: the Tensor crosses its pipe too
    async with EnvClient(server.address) as c:
        handle, spec = await c.open("reach", SMALL, seed=1)
        await c.reset(handle, seed=1)
        yield c, handle, spec


async def test_spec_declares_numeric_actions(reach):
    _, _, spec = reach
    assert spec.numeric_actions and spec.action_dim == 2 and spec.max_actions_per_turn == 4
    assert list(spec.action_low) == [-1, -1] and list(spec.action_high) == [1, 1] and spec.clip_actions
    assert spec.action_kind == env_pb2.ACTION_KIND_CONTINUOUS


async def test_numeric_chunk_moves_the_agent_like_the_same_text(start_server):
    server = await start_server()
    async with EnvClient(server.address) as c:
        a, _ = await c.open("reach", SMALL, seed=5)
        b, _ = await c.open("reach", SMALL, seed=5)
        for h in (a, b):
            await c.reset(h, seed=5)
        chunk = np.array([[0.5, 0.5], [-0.5, 0.25]], dtype=np.float32)
        ra, rb = await c.step([(a, chunk), (b, "0.5 0.5, -0.5 0.25")])
        oa, ob = ra.unwrap(), rb.unwrap()
        assert oa.step == ob.step == 2 and oa.reward == pytest.approx(ob.reward, abs=1e-6)
        assert np.array_equal(oa.images[0], ob.images[0])
        # a single action of shape (D,) and float64 work as well
        [r] = await c.step({a: np.array([0.1, -0.1])})
        assert r.unwrap().step == 3


@pytest.mark.parametrize("bad, words", [
    (np.array([[0.1, 0.2, 0.3]], dtype=np.float32), "shape [1, 3]"),
    (np.zeros((5, 2), dtype=np.float32), "shape [5, 2]"),                 # more than max_actions_per_turn
    (np.zeros((1, 2), dtype=np.int32), "dtype DTYPE_INT32"),
    (np.array([[0.1, np.nan]], dtype=np.float32), "non-finite"),
    (np.array([[np.inf, 0.0]], dtype=np.float64), "non-finite"),
])
async def test_bad_tensors_are_refused_naming_the_field(reach, bad, words):
    c, handle, _ = reach
    [r] = await c.step({handle: bad})
    assert r.error is not None and r.error.code == INVALID_ARGUMENT
    assert "step.actions[].values" in r.error.message and words in r.error.message
    ok = (await c.step_one(handle, "0 0"))      # the env was not stepped, and still serves
    assert ok.step == 1


async def test_corrupt_tensor_bytes_and_text_plus_values(reach):
    c, handle, _ = reach
    broken = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=[1, 2], codec=tensor_pb2.CODEC_RAW, data=b"\0" * 3)
    resp = await c.request(env_pb2.EnvRequest(step=env_pb2.StepRequest(actions=[env_pb2.Action(handle=handle, values=broken)])))
    [res] = resp.step.results
    assert res.status.code == INVALID_ARGUMENT and "step.actions[].values" in res.status.message
    both = env_pb2.Action(handle=handle, text="0 0", values=codec.encode(np.zeros(2, np.float32)))
    with pytest.raises(RemoteError) as e:
        await c.request(env_pb2.EnvRequest(step=env_pb2.StepRequest(actions=[both])))
    assert e.value.code == INVALID_ARGUMENT and "step.actions[].values" in str(e.value)


async def test_out_of_range_is_clipped_only_when_the_spec_says_so(start_server):
    server = await start_server()
    async with EnvClient(server.address) as c:
        clip, _ = await c.open("reach", SMALL, seed=2)
        ref, _ = await c.open("reach", SMALL, seed=2)
        strict, spec = await c.open("reach", {**SMALL, "clip": "false"}, seed=2)
        assert not spec.clip_actions
        for h in (clip, ref, strict):
            await c.reset(h, seed=2)
        big = np.array([[3.0, -7.0]], dtype=np.float32)
        r_clip, r_ref, r_strict = await c.step([(clip, big), (ref, np.array([[1.0, -1.0]], np.float32)), (strict, big)])
        assert np.array_equal(r_clip.unwrap().images[0], r_ref.unwrap().images[0])   # clipped to [1, -1]
        assert r_strict.error is not None and r_strict.error.code == INVALID_ARGUMENT
        assert "step.actions[].values" in r_strict.error.message and "does not clip" in r_strict.error.message


async def test_text_env_refuses_numeric_actions(start_server):
    server = await start_server()
    async with EnvClient(server.address) as c:
        h, _ = await c.open("frozenlake", {"size": "4"}, seed=0)
        await c.reset(h, seed=0)
        [r] = await c.step({h: np.zeros(2, np.float32)})
        assert r.error.code == INVALID_ARGUMENT and "text actions only" in r.error.message


def test_reach_reaches_with_a_scripted_policy():
    """The task is solvable from the state the image shows: steer straight at the target."""
    from atlasrl.envserver.envs.reach import ReachEnv

    wins = 0
    for seed in range(20):
        env = ReachEnv.from_config({"image_size": "32"}, seed=seed)
        out = env.text_reset(seed=seed)
        while not (out.terminated or out.truncated):
            d = env.target - env.agent
            step = d / np.abs(d).max()               # a straight line at full speed: it passes within the radius
            out = env.numeric_step(np.tile(step, (8, 1)))
        wins += out.success
        assert out.images[0].shape == (32, 32, 3)
    assert wins == 20
