"""render=false: a text-only policy's env server renders, encodes and sends no frame (bench/rollout_throughput.py
--no-frames), over the real gRPC stream; the text state is unchanged and a config without any state is refused."""
import grpc
import pytest

from atlasrl.clients.env import EnvClient, RemoteError

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


@pytest.fixture
async def server():
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer

    s = EnvServer(EnvServerConfig(port=0, workers=0))
    await s.start()
    yield s
    await s.stop(0)


async def test_no_frame_same_text(server):
    async with EnvClient(server.address) as c:
        framed, _ = await c.open("frozenlake", {"text_mode": "relative"}, seed=4)
        bare, _ = await c.open("frozenlake", {"text_mode": "relative", "render": "false"}, seed=4)
        a, b = await c.reset(framed, seed=4), await c.reset(bare, seed=4)
        assert len(a.proto.images) == 1 and len(b.proto.images) == 0
        assert a.proto.text == b.proto.text
        for action in ("Right", "Down"):
            (ra,), (rb,) = await c.step([(framed, action)]), await c.step([(bare, action)])
            assert rb.observation.proto.text == ra.observation.proto.text and not rb.observation.proto.images
            assert rb.observation.proto.reward == ra.observation.proto.reward


async def test_no_state_at_all_is_refused(server):
    async with EnvClient(server.address) as c:
        with pytest.raises(RemoteError) as e:
            await c.open("frozenlake", {"text_mode": "none", "render": "false"})
        assert e.value.code == INVALID_ARGUMENT and "render=false" in e.value.message
