"""The per-GPU layout on a CPU host: a ManiSkill env in an env-server worker process
started with --devices (CUDA_VISIBLE_DEVICES set; no CUDA here, so it renders on the CPU device)."""
import numpy as np
import pytest

from atlasrl.action_codec import ActionCodec
from atlasrl.clients.env import EnvClient
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.server import EnvServer

pytestmark = [pytest.mark.maniskill, pytest.mark.slow]


async def test_env_in_a_device_worker_process(maniskill_ready):
    server = EnvServer(EnvServerConfig(port=0, devices=["0"], envs=["maniskill"]))
    await server.start()
    try:
        assert server.pool.workers[0].proc.pid is not None                  # a real child process
        async with EnvClient(server.address) as client:
            handle, spec = await client.open("maniskill:PushCube-v1", {"image_size": "48"}, seed=5)
            assert spec.config["render_backend"] == "auto" and spec.action_dim == 7
            first = await client.reset(handle)
            obs = await client.step_one(handle, ActionCodec([-1.0] * 7, [1.0] * 7).encode(np.full(7, 0.5)))
            assert first.images[0].shape == (48, 48, 3) and first.images[0].std() > 5
            assert obs.step == 1 and obs.info["action_is_valid"] is True
    finally:
        await server.stop(0)
