"""Safe defaults (bind refusal), resource limits and secrets kept out of logs."""
import asyncio
import logging
import os
import subprocess
import sys

import grpc
import pytest

from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer, ServerConfig, make_channel
from atlasrl.rpc.config import ChannelConfig, SecurityConfig
from atlasrl.rpc.security import SecurityError
from atlasrl.v1 import env_pb2, env_pb2_grpc
from tests.echo_services import ENV, EchoEnv

from .conftest import client_sec, server_sec, token_of


def non_loopback_ip() -> str:
    import socket

    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("10.255.255.255", 1))
        ip = s.getsockname()[0]
    except OSError:
        ip = "0.0.0.0"
    finally:
        s.close()
    return ip if not ip.startswith("127.") else "0.0.0.0"


def test_defaults_are_loopback():
    cfg = ServerConfig()
    assert (cfg.host, cfg.metrics_host) == ("127.0.0.1", "127.0.0.1")


async def test_non_loopback_bind_refused_without_tls_and_tokens(pki, caplog):
    good, _ = pki
    host = non_loopback_ip()
    for sec, missing in ((SecurityConfig(), "TLS"), (server_sec(good, tokens=False), "tokens"),
                         (SecurityConfig(token_file=good["tokens_envserver"]), "TLS")):
        s = RpcServer(ServerConfig(host=host, port=0, security=sec), Metrics("bind"))
        with pytest.raises(SecurityError, match=f"refusing to serve on non-loopback address {host} without .*{missing}"):
            await s.start()
    # with both it serves; with --insecure it serves and warns loudly
    s = RpcServer(ServerConfig(host=host, port=0, security=server_sec(good)), Metrics("bind"))
    await s.start()
    await s.stop(0)
    with caplog.at_level(logging.WARNING, logger="atlasrl.rpc"):
        s = RpcServer(ServerConfig(host=host, port=0, security=SecurityConfig(insecure=True)), Metrics("bind"))
        await s.start()
        await s.stop(0)
    assert any("INSECURE" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_cli_flags_refuse_non_loopback_bind():
    """The real role CLI: coordinator on 0.0.0.0 without TLS/tokens exits non-zero naming the problem."""
    r = subprocess.run([sys.executable, "-m", "atlasrl.cli.main", "coordinator", "--host", "0.0.0.0", "--port", "0",
                        "--state-dir", os.devnull + "-nope"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "ATLASRL_LOG_LEVEL": "ERROR"})
    assert r.returncode != 0
    assert "refusing to serve on non-loopback address 0.0.0.0" in (r.stdout + r.stderr)


async def serve(**cfg):
    s = RpcServer(ServerConfig(port=0, **cfg), Metrics("limits"))
    env = EchoEnv()
    s.add(env, ENV)
    await s.start()
    s.env = env
    return s


async def open_session(ch, rid=1):
    call = env_pb2_grpc.EnvServiceStub(ch).Session()
    await call.write(env_pb2.EnvRequest(request_id=rid))
    await call.read()
    return call


async def test_max_sessions_per_client_by_token(pki):
    good, _ = pki
    server = await serve(security=server_sec(good, mtls=False), max_sessions_per_client=2)
    try:
        async with make_channel(server.address, ChannelConfig(security=client_sec(good, "actor"))) as ch, \
                make_channel(server.address, ChannelConfig(security=client_sec(good, "memory"))) as other:
            a, b = await open_session(ch, 1), await open_session(ch, 2)
            third = env_pb2_grpc.EnvServiceStub(ch).Session()
            await third.write(env_pb2.EnvRequest(request_id=3))
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await third.read()
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "already has 2 live sessions" in e.value.details() and "actor:" in e.value.details()
            # another client is unaffected, unary calls are not sessions
            await open_session(other, 9)
            assert (await env_pb2_grpc.EnvServiceStub(ch).ListEnvs(env_pb2.ListEnvsRequest())).envs
            # closing one frees a slot
            await a.done_writing()
            assert await a.read() == grpc.aio.EOF
            await asyncio.sleep(0.1)
            c = await open_session(ch, 4)
            for call in (b, c):
                await call.done_writing()
    finally:
        await server.stop(0)


async def test_session_idle_timeout_ends_only_the_silent_stream():
    server = await serve(session_idle_timeout_s=0.5)
    try:
        async with make_channel(server.address) as ch:
            silent = await open_session(ch, 1)
            busy = await open_session(ch, 2)
            for i in range(6):
                await asyncio.sleep(0.2)
                await busy.write(env_pb2.EnvRequest(request_id=10 + i))
                assert (await busy.read()).request_id == 10 + i
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await silent.read()
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "idle for more than 0.5 s" in e.value.details()
            await busy.done_writing()
    finally:
        await server.stop(0)


async def test_max_message_bytes_rejected_and_server_keeps_serving():
    server = await serve(max_message_bytes=4096)
    try:
        async with make_channel(server.address, ChannelConfig(max_message_bytes=1 << 20)) as ch:
            stub = env_pb2_grpc.EnvServiceStub(ch)
            raw = ch.unary_unary("/atlasrl.v1.EnvService/ListEnvs", request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await raw(b"\x0a\x90\x4e" + b"x" * 10_000)   # an unknown 10 kB field
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and e.value.details()
            assert (await stub.ListEnvs(env_pb2.ListEnvsRequest())).envs
    finally:
        await server.stop(0)


async def test_max_concurrent_streams_per_connection_queues_extra_streams():
    server = await serve(max_concurrent_streams=2)
    try:
        # channels with equal arguments share one connection (gRPC's global subchannel pool): differ one
        async with make_channel(server.address) as ch, make_channel(server.address, ChannelConfig(keepalive_time_s=31)) as other:
            a, b = await open_session(ch, 1), await open_session(ch, 2)
            third = env_pb2_grpc.EnvServiceStub(ch).Session(timeout=1.0)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await third.write(env_pb2.EnvRequest(request_id=3))
                await third.read()
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and e.value.details()
            assert server.env.live == 2
            await open_session(other, 7)          # another connection is served
            await a.done_writing()
            await a.read()
            c = await open_session(ch, 4)         # a freed stream slot is reused
            for call in (b, c):
                await call.done_writing()
    finally:
        await server.stop(0)


async def test_no_secret_in_logs(pki, caplog, capfd):
    """Run a token-guarded mTLS server at DEBUG with good, bad and wrong-role calls; no token text is logged."""
    good, _ = pki
    secrets = [token_of(good, r) for r in ("actor", "learner", "admin", "envserver")]
    bogus = "bogus-token-" + "z" * 24
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("atlasrl").setLevel(logging.DEBUG)
        server = await serve(security=server_sec(good))
        try:
            async with make_channel(server.address, ChannelConfig(security=client_sec(good, "actor"))) as ch:
                await env_pb2_grpc.EnvServiceStub(ch).ListEnvs(env_pb2.ListEnvsRequest())
                logging.getLogger("atlasrl.test").info("channel %r config %r", ch, client_sec(good, "actor"))
            os.environ["ATLASRL_TOKENS"] = f"actor:{bogus}"
            try:
                async with make_channel(server.address, ChannelConfig(security=client_sec(good, tokens=False))) as ch:
                    with pytest.raises(grpc.aio.AioRpcError):
                        await env_pb2_grpc.EnvServiceStub(ch).ListEnvs(env_pb2.ListEnvsRequest())
            finally:
                del os.environ["ATLASRL_TOKENS"]
            (good["tokens_envserver"].parent / "envserver.tokens").touch()
        finally:
            await server.stop(0)
            logging.getLogger("atlasrl").setLevel(logging.NOTSET)
    out, err = capfd.readouterr()
    text = "\n".join(r.getMessage() for r in caplog.records) + out + err
    assert "serving atlasrl.v1.EnvService" in text and "tokens" in text   # the logs were captured
    for s in secrets + [bogus]:
        assert s not in text
