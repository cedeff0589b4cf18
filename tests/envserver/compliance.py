"""Compliance tests for EnvService that any env adopts with a tiny subclass (dm_env_rpc style).

    class TestFrozenLakeService(EnvServiceCompliance):
        env_id = "frozenlake"
        config = {"size": "4"}
        valid_action = "Right"

Every test runs against a real env server on a loopback port 0 (the
``start_server`` fixture of tests/envserver/conftest.py) through the real client.
"""
from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from atlasrl.clients.env import EnvClient
from atlasrl.rpc import RemoteError, make_channel
from atlasrl.v1 import env_pb2, env_pb2_grpc

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


class EnvServiceCompliance:
    env_id: str = ""
    config: dict[str, str] = {}
    seed: int = 3
    valid_action: str = ""          # one action text the env accepts
    invalid_action: str = "Jump around"  # text the env must reject
    server_config: dict = {}        # EnvServerConfig overrides (e.g. workers=2)

    @pytest.fixture
    async def client(self, start_server):
        server = await start_server(**self.server_config)
        async with EnvClient(server.address) as c:
            c.server = server
            yield c

    async def _fresh(self, client: EnvClient, seed: int | None = None):
        handle, spec = await client.open(self.env_id, self.config, seed=self.seed if seed is None else seed)
        obs = await client.reset(handle, seed=self.seed if seed is None else seed)
        return handle, spec, obs

    # --- spec and observations ---------------------------------------------------------
    async def test_listed_with_a_spec(self, client):
        specs = {s.env_id: s for s in await client.list_envs()}
        assert self.env_id in specs, f"ListEnvs lacks {self.env_id}: {sorted(specs)}"
        spec = specs[self.env_id]
        assert len(spec.image_shape) == 3 and spec.image_shape[2] == 3
        assert spec.action_kind != env_pb2.ACTION_KIND_INVALID and spec.max_steps > 0

    async def test_open_and_reset_give_a_complete_observation(self, client):
        handle, spec, obs = await self._fresh(client)
        assert handle > 0 and spec.env_id == self.env_id
        assert spec.config, "spec.config should hold the resolved configuration"
        img = obs.images[0]
        assert img.dtype == np.uint8 and list(img.shape) == list(spec.image_shape)
        assert img.std() > 0, "rendered frame is blank"
        assert obs.text and obs.layout_key and obs.step == 0 and obs.reward == 0
        assert not obs.done
        assert 0 <= obs.agent[0] < max(spec.grid_rows, 1) and 0 <= obs.agent[1] < max(spec.grid_cols, 1)
        assert obs.proto.images[0].name == (list(spec.camera_names) or ["main"])[0]

    async def test_reset_is_deterministic_by_seed(self, client):
        _, _, a = await self._fresh(client, seed=11)
        _, _, b = await self._fresh(client, seed=11)
        assert a.layout_key == b.layout_key and a.text == b.text
        assert np.array_equal(a.images[0], b.images[0])
        keys = {(await self._fresh(client, seed=s))[2].layout_key for s in range(5)}
        assert len(keys) > 1, "different seeds should give different layouts"

    async def test_batched_step_equals_single_steps(self, client):
        handles = [(await self._fresh(client))[0] for _ in range(3)]
        batch = await client.step({h: self.valid_action for h in handles})
        assert [r.handle for r in batch] == handles
        single_h, _, _ = await self._fresh(client)
        single = await client.step_one(single_h, self.valid_action)
        for r in batch:
            o = r.unwrap()
            assert o.text == single.text and o.reward == single.reward and o.agent == single.agent
            assert np.array_equal(o.images[0], single.images[0])

    async def test_episode_ends_within_max_steps(self, client):
        handle, spec, obs = await self._fresh(client)
        turns = 0
        while not obs.done:
            obs = await client.step_one(handle, self.valid_action)
            turns += 1
            assert turns <= spec.max_steps, "episode did not end at max_steps"
        assert obs.step <= spec.max_steps
        [r] = await client.step({handle: self.valid_action})
        assert r.error is not None and r.error.code == FAILED_PRECONDITION and "send Reset" in r.error.message
        assert (await client.reset(handle)).step == 0

    # --- pipelining and sessions ---------------------------------------------------------
    async def test_pipelined_requests_are_answered_in_order(self, client):
        """Write many requests before reading any; responses echo request ids in order."""
        handle, _, _ = await self._fresh(client)
        async with make_channel(client.target) as ch:
            call = env_pb2_grpc.EnvServiceStub(ch).Session()
            await call.write(env_pb2.EnvRequest(request_id=100, open=env_pb2.OpenRequest(env_id=self.env_id, config=self.config, seed=1)))
            await call.write(env_pb2.EnvRequest(request_id=101, reset=env_pb2.ResetRequest(handle=0)))  # unknown: error, stream goes on
            opened = await call.read()
            h = opened.open.handle
            ids = list(range(102, 132))
            await call.write(env_pb2.EnvRequest(request_id=ids[0], reset=env_pb2.ResetRequest(handle=h, seed=1)))
            for rid in ids[1:]:
                await call.write(env_pb2.EnvRequest(request_id=rid, step=env_pb2.StepRequest(actions=[env_pb2.Action(handle=h, text=self.valid_action)])))
            await call.write(env_pb2.EnvRequest(request_id=999, step=env_pb2.StepRequest(actions=[env_pb2.Action(handle=handle, text=self.valid_action)])))
            await call.done_writing()
            responses = []
            while (r := await call.read()) is not grpc.aio.EOF:
                responses.append(r)
        assert opened.request_id == 100 and opened.status.code == 0
        assert [r.request_id for r in responses] == [101] + ids + [999]
        assert responses[0].status.code == NOT_FOUND
        assert responses[1].reset.observation.step == 0
        # handles are per stream: the client's handle is unknown on this one
        assert responses[-1].step.results[0].status.code == NOT_FOUND

    async def test_concurrent_sessions_and_calls(self, client):
        async def one_stream(k: int):
            async with EnvClient(client.target) as c:
                handle, _, _obs = await self._fresh(c, seed=k)
                results = await asyncio.gather(*(c.step({handle: self.valid_action}) for _ in range(3)))
                return handle, [r[0].error or r[0].observation for r in results]

        outs = await asyncio.gather(*(one_stream(k) for k in range(4)))
        assert len({h for h, _ in outs}) == 4
        for _, results in outs:
            steps = [r.step for r in results if not isinstance(r, RemoteError)]
            assert steps == sorted(steps), "pipelined steps of one env must apply in order"

    # --- per-request errors ------------------------------------------------------------
    async def test_invalid_action_strict_and_lenient(self, client):
        handle, _, _ = await self._fresh(client)
        [strict] = await client.step({handle: self.invalid_action}, strict=True)
        assert strict.error is not None and strict.error.code == INVALID_ARGUMENT
        assert self.invalid_action.split()[0] in strict.error.message
        [lenient] = await client.step({handle: self.invalid_action})
        obs = lenient.unwrap()
        assert obs.info["action_is_valid"] is False and obs.info.get("invalid_reason")
        assert (await client.step_one(handle, self.valid_action)).info["action_is_valid"] is True

    async def test_unknown_and_closed_handles_fail_alone(self, client):
        handle, _, _ = await self._fresh(client)
        other, _, _ = await self._fresh(client)
        assert await client.close([other]) == 1
        results = await client.step([(handle, self.valid_action), (other, self.valid_action), (424242, self.valid_action)])
        assert results[0].error is None
        assert results[1].error.code == NOT_FOUND and str(other) in results[1].error.message
        assert results[2].error.code == NOT_FOUND and "424242" in results[2].error.message
        with pytest.raises(RemoteError) as e:
            await client.reset(other)
        assert e.value.code == NOT_FOUND
        with pytest.raises(RemoteError) as e:
            await client.close([handle, 77])
        assert e.value.code == NOT_FOUND and "77" in e.value.message

    async def test_step_before_open_and_before_reset(self, client):
        with pytest.raises(RemoteError) as e:
            await client.step({1: self.valid_action})
        assert e.value.code == FAILED_PRECONDITION and "Open" in e.value.message
        handle, _ = await client.open(self.env_id, self.config, seed=1)
        [r] = await client.step({handle: self.valid_action})
        assert r.error.code == FAILED_PRECONDITION and "Reset" in r.error.message
