"""A client stream the server ends early reports the server's status (atlasrl.rpc.grpc_compat).

Unpatched grpcio 1.85.3 answered 15 of 300 such calls (64 messages of 64 KiB)
with INTERNAL "Internal error from Core" on this machine, and 19 of 500 of the
learner test's Publish calls (the CI failure that led here), so 300 calls show it.
"""
import grpc
import pytest

from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer, ServerConfig, grpc_compat, make_channel
from atlasrl.rpc.errors import PermissionDenied
from atlasrl.v1 import weights_pb2, weights_pb2_grpc
from tests.echo_services import WEIGHTS, CountingWeights

CALLS = 300


class RefusingWeights(CountingWeights):
    """Publish refuses before reading anything, as a token check does."""

    async def Publish(self, requests, context):
        raise PermissionDenied("publish refused before the first message")


@pytest.fixture
async def server():
    s = RpcServer(ServerConfig(port=0, metrics_port=0), Metrics("test"))
    s.add(RefusingWeights(), WEIGHTS)
    await s.start()
    yield s
    await s.stop(0)


def updates(n=64, size=64 * 1024):
    return [weights_pb2.WeightUpdate(part=weights_pb2.TensorPart(index=0, offset=i * size, data=b"\x01" * size)) for i in range(n)]


async def test_early_refusal_reaches_every_client_stream_as_sent(server):
    msgs = updates()
    codes = []
    async with make_channel(server.address) as ch:
        assert grpc.aio._call._StreamRequestMixin._write is grpc_compat._write_keeping_status   # make_channel put it in place
        stub = weights_pb2_grpc.WeightServiceStub(ch)
        for _ in range(CALLS):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.Publish(iter(msgs))
            codes.append((e.value.code(), e.value.details()))
    assert set(codes) == {(grpc.StatusCode.PERMISSION_DENIED, "publish refused before the first message")}


async def test_reader_writer_style_gets_the_status_too(server):
    async with make_channel(server.address) as ch:
        call = weights_pb2_grpc.WeightServiceStub(ch).Publish()
        with pytest.raises(grpc.aio.AioRpcError) as e:
            for m in updates():
                await call.write(m)
            await call.done_writing()
            await call
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert await call.code() == grpc.StatusCode.PERMISSION_DENIED


def test_install_is_idempotent_and_reversible():
    assert grpc_compat.install() and grpc_compat.install()
    grpc_compat.uninstall()
    assert grpc.aio._call._StreamRequestMixin._write is grpc_compat._original_write
    assert grpc_compat.install()


def test_every_grpcio_patch_is_pinned_to_this_grpcio():
    """A grpcio upgrade fails here on purpose: re-check each patch's issue (fixed upstream? does the copied code
    still match what it replaces?), then move ``written_for``."""
    for name, patch in grpc_compat.PATCHES.items():
        assert patch.written_for == grpc_compat.grpc_minor(), (
            f"grpcio is {grpc.__version__} but the patch {name!r} was written for {patch.written_for}: "
            f"re-check {patch.issue} and atlasrl/rpc/grpc_compat.py")
        assert patch.needed(), f"{name}: the grpcio code it replaces changed; re-check {patch.issue}"
