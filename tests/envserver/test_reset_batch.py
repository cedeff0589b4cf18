"""ResetBatch: several seeded resets in one message, each equal to its own Reset, in threads and in worker
processes; bad entries fail alone and the stream keeps serving."""
from __future__ import annotations

import grpc
import pytest

from atlasrl.clients.env import EnvClient
from atlasrl.rpc import RemoteError

from .conftest import same_observation as _same

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("workers", [0, 2])
async def test_a_reset_batch_equals_one_reset_each_and_starts_the_episodes(start_server, workers):
    server = await start_server(workers=workers)
    async with EnvClient(server.address) as client:
        batched = [(await client.open("frozenlake", {"size": "4"}, seed=s))[0] for s in range(5)]
        single = [(await client.open("frozenlake", {"size": "4"}, seed=s))[0] for s in range(5)]
        seeds = [11, 12, 12, None, 40]   # a group's members share a seed; None continues the instance's RNG
        results = await client.reset_many(list(zip(batched, seeds)))
        assert [r.handle for r in results] == batched
        for r, h, seed in zip(results, single, seeds):
            assert _same(r.unwrap(), await client.reset(h, seed))
        # the episodes run: a step is accepted on every reset env
        assert all(r.error is None for r in await client.step([(h, "Down") for h in batched]))
    line = next(x for x in server.metrics.exposition().splitlines() if x.startswith('atlasrl_env_resets_total{env_id="frozenlake"}'))
    assert float(line.split()[-1]) == 10


async def test_bad_entries_of_a_reset_batch_fail_alone(server):
    async with EnvClient(server.address) as client:
        a, _ = await client.open("frozenlake", {"size": "4"}, seed=0)
        b, _ = await client.open("frozenlake", {"size": "4"}, seed=1)
        results = await client.reset_many([(a, 3), (999, 3), (b, 4), (a, 5)])
        assert results[0].error is None and results[2].error is None
        assert results[1].error.status_code == grpc.StatusCode.NOT_FOUND and "999" in str(results[1].error)
        assert results[3].error.status_code == grpc.StatusCode.INVALID_ARGUMENT and "more than once" in str(results[3].error)
        assert _same(results[0].unwrap(), await client.reset(a, 3))   # the repeated entry did not reset it again
        with pytest.raises(RemoteError) as e:          # an empty batch is refused as a whole, naming the field
            await client.reset_many([])
        assert e.value.status_code == grpc.StatusCode.INVALID_ARGUMENT and "reset_batch" in str(e.value)
        [r] = await client.step([(b, "Down")])       # the stream still serves
        assert r.error is None
