"""TLS/mTLS handshakes, bearer tokens and role scopes over real loopback gRPC."""
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer, ServerConfig, make_channel
from atlasrl.rpc.config import ChannelConfig, SecurityConfig
from atlasrl.rpc.security import SecurityError, parse_tokens, token_digest
from atlasrl.v1 import env_pb2, env_pb2_grpc, weights_pb2, weights_pb2_grpc
from tests.echo_services import ENV, WEIGHTS, CountingWeights, EchoEnv

from .conftest import client_sec, server_sec


async def serve(sec, **cfg):
    s = RpcServer(ServerConfig(port=0, security=sec, **cfg), Metrics("sec"))
    env, weights = EchoEnv(), CountingWeights()
    s.add(env, ENV)
    s.add(weights, WEIGHTS)
    await s.start()
    s.env, s.weights = env, weights
    return s


def chan(server, sec, **kw):
    return make_channel(server.address, ChannelConfig(security=sec, **kw))


async def list_envs(server, sec, timeout=5):
    async with chan(server, sec) as ch:
        return await env_pb2_grpc.EnvServiceStub(ch).ListEnvs(env_pb2.ListEnvsRequest(), timeout=timeout)


async def code_of(coro):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await coro
    return e.value.code(), e.value.details()


async def test_mtls_handshake_right_and_wrong_certs(pki):
    good, rogue = pki
    server = await serve(server_sec(good, tokens=False))
    try:
        assert (await list_envs(server, client_sec(good, tokens=False))).envs[0].env_id == "echo"
        # no client certificate under --mtls
        code, _ = await code_of(list_envs(server, client_sec(good, cert=None, tokens=False)))
        assert code == grpc.StatusCode.UNAVAILABLE
        # a client certificate from another CA
        code, _ = await code_of(list_envs(server, client_sec(rogue, tokens=False, ca=good["ca"])))
        assert code == grpc.StatusCode.UNAVAILABLE
        # a client that trusts another CA refuses the server
        code, details = await code_of(list_envs(server, client_sec(rogue, tokens=False)))
        assert code == grpc.StatusCode.UNAVAILABLE and details
        # plaintext against a TLS port
        code, _ = await code_of(list_envs(server, SecurityConfig()))
        assert code == grpc.StatusCode.UNAVAILABLE
        # the server still serves the good client after all that
        assert (await list_envs(server, client_sec(good, tokens=False))).envs
    finally:
        await server.stop(0)


async def test_tls_without_mtls_accepts_clients_without_cert_and_checks_host_name(pki):
    good, _ = pki
    server = await serve(server_sec(good, mtls=False, tokens=False))
    try:
        assert (await list_envs(server, client_sec(good, cert=None, tokens=False))).envs
        wrong_name = client_sec(good, cert=None, tokens=False).model_copy(update={"server_name": "not-in-the-cert.example"})
        code, _ = await code_of(list_envs(server, wrong_name))
        assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


async def test_tokens_unauthenticated_permission_denied_and_health_open(pki):
    good, _ = pki
    server = await serve(server_sec(good, role="learner"))
    try:
        assert (await list_envs(server, client_sec(good, "actor"))).envs
        code, details = await code_of(list_envs(server, client_sec(good, tokens=False)))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "missing bearer token" in details
        bad = SecurityConfig(**{**client_sec(good, tokens=False).model_dump(), "token_file": None})
        import os
        os.environ["ATLASRL_TOKENS"] = "actor:" + "x" * 40
        try:
            code, details = await code_of(list_envs(server, bad))
        finally:
            del os.environ["ATLASRL_TOKENS"]
        assert code == grpc.StatusCode.UNAUTHENTICATED and details.endswith("invalid token")
        assert "x" * 40 not in details
        # health needs no token
        async with chan(server, client_sec(good, tokens=False)) as ch:
            h = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=ENV.full_name))
        assert h.status == health_pb2.HealthCheckResponse.SERVING
        # only the learner publishes; actor reads weights
        for role, ok in (("actor", False), ("admin", False), ("memory", False), ("learner", True)):
            async with chan(server, client_sec(good, role)) as ch:
                stub = weights_pb2_grpc.WeightServiceStub(ch)
                assert (await stub.GetLatest(weights_pb2.GetLatestRequest())) is not None if role != "memory" else True
                call = stub.Publish(iter([weights_pb2.WeightUpdate(version=1)]))
                if ok:
                    await call
                else:
                    code, details = await code_of(call)
                    assert code == grpc.StatusCode.PERMISSION_DENIED
                    assert f"role '{role}' may not call atlasrl.v1.WeightService/Publish" in details
        assert server.weights.published == 1
        async with chan(server, client_sec(good, "memory")) as ch:
            code, _ = await code_of(weights_pb2_grpc.WeightServiceStub(ch).GetLatest(weights_pb2.GetLatestRequest()))
            assert code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await server.stop(0)


async def test_sync_channel_and_stream_carry_the_token(pki):
    good, _ = pki
    server = await serve(server_sec(good))
    try:
        import asyncio

        def sync_call():
            ch = make_channel(server.address, ChannelConfig(security=client_sec(good, "actor")), aio=False)
            try:
                return env_pb2_grpc.EnvServiceStub(ch).ListEnvs(env_pb2.ListEnvsRequest(), timeout=5)
            finally:
                ch.close()

        assert (await asyncio.to_thread(sync_call)).envs
        async with chan(server, client_sec(good, "actor")) as ch:
            call = env_pb2_grpc.EnvServiceStub(ch).Session()
            await call.write(env_pb2.EnvRequest(request_id=7))
            assert (await call.read()).request_id == 7
            await call.done_writing()
    finally:
        await server.stop(0)


async def test_rotation_two_tokens_per_role_and_reload_without_restart(pki, tmp_path):
    import asyncio

    good, _ = pki
    old, new = "actor-old-" + "a" * 20, "actor-new-" + "b" * 20
    tokens = tmp_path / "server.tokens"
    tokens.write_text(f"actor:sha256:{token_digest(old).hex()}\nactor:sha256:{token_digest(new).hex()}\n")
    server = await serve(server_sec(good).model_copy(update={"token_file": tokens}))

    def client(tok):
        f = tmp_path / f"c{len(tok)}{tok[6]}.token"
        f.write_text(f"actor:{tok}\n")
        return client_sec(good).model_copy(update={"token_file": f})

    try:
        assert (await list_envs(server, client(old))).envs
        assert (await list_envs(server, client(new))).envs
        tokens.write_text(f"actor:sha256:{token_digest(new).hex()}\n")   # retire the old token
        await asyncio.sleep(1.1)
        code, _ = await code_of(list_envs(server, client(old)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert (await list_envs(server, client(new))).envs
    finally:
        await server.stop(0)


def test_token_file_parsing_rules():
    store = parse_tokens("# comment\nactor:" + "t" * 16 + "\nlearner:sha256:" + "00" * 32 + "  # trailing\n")
    assert store.role_of("t" * 16) == "actor" and store.role_of("u" * 16) is None
    assert "t" * 16 not in repr(store)
    for bad, why in (("actor:short", "shorter than 16"), ("root:" + "t" * 20, "role among"),
                     ("actor:sha256:abc", "64 hex digits"), ("no-colon", "role:token")):
        with pytest.raises(SecurityError, match=why):
            parse_tokens(bad)
    with pytest.raises(SecurityError, match="say which role"):
        parse_tokens("actor:" + "a" * 20 + "\nlearner:" + "b" * 20).client_token(None)


def test_tls_config_errors_are_clear(pki, tmp_path):
    good, _ = pki
    with pytest.raises(SecurityError, match="needs both --tls-cert and --tls-key"):
        RpcServer(ServerConfig(security=SecurityConfig(tls_cert=good["server"])), Metrics("x"))
    with pytest.raises(SecurityError, match="--mtls needs --tls-ca"):
        RpcServer(ServerConfig(security=SecurityConfig(tls_cert=good["server"], tls_key=good["server_key"], mtls=True)), Metrics("x"))
    with pytest.raises(SecurityError, match="cannot read TLS key"):
        RpcServer(ServerConfig(security=SecurityConfig(tls_cert=good["server"], tls_key=tmp_path / "nope")), Metrics("x"))
