"""Staleness bound 0 is synchronous training: the async pipeline at bound 0 reproduces a plain synchronous loop.

bench/async_vs_sync.py runs the actor's RolloutLoop and Policy (transformers engine, tiny model) against a real env
server over gRPC, with the learner's Trainer as a concurrent task that hands weights to the Policy the way the
WeightSubscriber does. Its reference ``bound=None`` trains inline, while nothing else runs, and loads the weights
directly. Same seeds: the same episodes must be trained in the same updates with the same losses, bit for bit,
and no token may be older than the weights being trained (lag 0).
"""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "async_vs_sync.py"
spec = importlib.util.spec_from_file_location("async_vs_sync", BENCH)
bench = importlib.util.module_from_spec(spec)
sys.modules["async_vs_sync"] = bench     # its dataclasses look their module up
spec.loader.exec_module(bench)

# FrozenLake 4x4 with a step penalty: episode returns differ with their length, so GRPO advantages (and the
# losses compared) are not all zero.
ENV = {"size": "4", "text_mode": "relative", "max_actions_per_turn": "1", "step_penalty": "-0.05"}


@pytest.fixture
async def env_address():
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer

    server = EnvServer(EnvServerConfig(port=0, workers=0))
    await server.start()
    yield server.address
    await server.stop(0)


def small(bound, swap="drain"):
    from atlasrl.models.tiny import tiny_model_path

    return bench.Spec(bound=bound, swap=swap, updates=3, groups_per_batch=2, group_size=2, num_envs=6, max_turns=10,
                      env_config=dict(ENV), model=str(tiny_model_path("qwen2", hidden=64, layers=2)), lr=1e-3, seed=1)


@pytest.mark.usefixtures("process_group")
@pytest.mark.parametrize("swap", ["drain", "interrupt"])
async def test_bound_zero_reproduces_synchronous_training(env_address, swap):
    reference = await bench.run(small(None), env_address)
    bound0 = await bench.run(small(0, swap), env_address)
    assert reference["seeds"] == bound0["seeds"]          # the same episodes in the same updates
    assert bound0["losses"] == reference["losses"]        # exactly: same tokens, same weights, same maths
    assert any(loss != 0 for loss in reference["losses"])
    assert bound0["lag_max"] == 0 and reference["lag_max"] == 0


@pytest.mark.usefixtures("process_group")
async def test_bound_one_runs_ahead(env_address):
    """Bound 1 lets generation start the next batch before the update: the batches it trains differ from sync's,
    and some tokens are one version old, never more than the bound plus the episodes still finishing."""
    reference = await bench.run(small(None), env_address)
    ahead = await bench.run(small(1), env_address)
    assert ahead["trained_episodes"] == reference["trained_episodes"] == 12
    assert ahead["lag_max"] >= 1
