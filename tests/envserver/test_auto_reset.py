"""StepRequest.auto_reset: an action that ends its episode also starts the next one, exactly as a seedless
Reset would, in threads and in worker processes; without it a finished env still waits for Reset."""
from __future__ import annotations

import random

import grpc
import pytest

from atlasrl.clients.env import EnvClient
from atlasrl.rpc import RemoteError

from .conftest import same_observation as _same

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("workers", [0, 1])
async def test_auto_reset_equals_a_seedless_reset_and_needs_no_reset_request(start_server, workers):
    server = await start_server(workers=workers)
    rng = random.Random(0)
    async with EnvClient(server.address) as client:
        auto, _ = await client.open("frozenlake", {"size": "4"}, seed=7)
        manual, _ = await client.open("frozenlake", {"size": "4"}, seed=7)
        assert _same(await client.reset(auto, seed=3), await client.reset(manual, seed=3))
        episodes = resets_sent = 0
        for _ in range(200):
            action = rng.choice(["Up", "Down", "Left", "Right"])
            [a] = await client.step([(auto, action)], auto_reset=True)
            [m] = await client.step([(manual, action)])
            assert _same(a.unwrap(), m.unwrap()), "the step itself is the same with or without auto_reset"
            if not m.unwrap().done:
                assert a.reset_observation is None
                continue
            episodes += 1
            # Without auto_reset the finished env refuses a step until it is reset.
            [late] = await client.step([(manual, "Right")])
            assert late.error is not None and late.error.status_code == grpc.StatusCode.FAILED_PRECONDITION
            fresh = await client.reset(manual)
            resets_sent += 1
            assert a.reset_observation is not None and _same(a.reset_observation, fresh)
            assert a.reset_observation.step == 0 and not a.reset_observation.done
            if episodes == 5:
                break
        assert episodes == 5
    # Both envs started 1 + 5 episodes: the automatic resets count like sent ones.
    line = next(x for x in server.metrics.exposition().splitlines() if x.startswith('atlasrl_env_resets_total{env_id="frozenlake"}'))
    assert float(line.split()[-1]) == 2 * (1 + resets_sent)


async def test_a_batch_with_auto_reset_resets_only_the_finished_envs(server):
    async with EnvClient(server.address) as client:
        handles = [(await client.open("frozenlake", {"size": "4"}, seed=s))[0] for s in range(6)]
        for s, h in enumerate(handles):
            await client.reset(h, seed=s)
        finished = running = 0
        for _ in range(30):
            results = await client.step([(h, "Down") for h in handles], auto_reset=True)
            for r in results:
                obs = r.unwrap()
                assert (r.reset_observation is not None) == obs.done
                finished += obs.done
                running += not obs.done
        assert finished and running, "some episodes ended and were reset in the batch, others went on"


async def test_a_failed_automatic_reset_keeps_the_final_observation_and_the_env_waits_for_reset(server):
    async with EnvClient(server.address) as client:
        h, _ = await client.open("frozenlake", {"size": "4"}, seed=0)
        await client.reset(h, seed=0)
        env = server.pool.workers[0].host._envs[h][1]

        def broken(seed=None):
            raise RuntimeError("renderer lost")

        env.text_reset = broken
        for _ in range(100):
            [r] = await client.step([(h, "Down")], auto_reset=True)
            if r.unwrap().done:
                break
        assert r.unwrap().done and r.reset_observation is None, "the step's own outcome survives its reset's failure"
        [late] = await client.step([(h, "Down")], auto_reset=True)
        assert late.error is not None and late.error.status_code == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(RemoteError) as e:                    # the client's own Reset names the failure
            await client.reset(h)
        assert e.value.status_code == grpc.StatusCode.INTERNAL and "renderer lost" in str(e.value)
