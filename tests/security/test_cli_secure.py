"""The real role CLI with the shared security flags: `atlasrl envserver --tls-cert .. --mtls --token-file ..`."""
import os
import subprocess
import sys

import grpc
import pytest

from atlasrl.rpc import make_channel
from atlasrl.rpc.config import ChannelConfig
from atlasrl.v1 import env_pb2, env_pb2_grpc

from .conftest import client_sec


def test_certs_init_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "atlasrl.cli.main", "certs", "init", str(tmp_path / "pki"), "--hosts",
                        "learner.lan,localhost", "--ips", "127.0.0.1,10.0.0.5"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "pki" / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"learner.lan", "localhost"}
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.0.0.5"}
    assert oct((tmp_path / "pki" / "tokens" / "actor.tokens").stat().st_mode & 0o777) == "0o600"
    bad = subprocess.run([sys.executable, "-m", "atlasrl.cli.main", "certs", "init", str(tmp_path / "x"), "--ips", "not-an-ip"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "not an IP address" in bad.stderr


async def test_envserver_cli_with_mtls_and_tokens(pki):
    good, _ = pki
    proc = subprocess.Popen(
        [sys.executable, "-m", "atlasrl.cli.main", "envserver", "--port", "0", "--workers", "0", "--print-port",
         "--tls-cert", str(good["server"]), "--tls-key", str(good["server_key"]), "--tls-ca", str(good["ca"]), "--mtls",
         "--token-file", str(good["tokens_envserver"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "ATLASRL_LOG_LEVEL": "INFO"})
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), proc.stderr.read() if proc.poll() is not None else line
        addr = f"127.0.0.1:{int(line.split()[1])}"
        async with make_channel(addr, ChannelConfig(security=client_sec(good, "actor"))) as ch:
            assert (await env_pb2_grpc.EnvServiceStub(ch).ListEnvs(env_pb2.ListEnvsRequest(), timeout=10)).envs
        async with make_channel(addr, ChannelConfig(security=client_sec(good, tokens=False))) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await env_pb2_grpc.EnvServiceStub(ch).ListEnvs(env_pb2.ListEnvsRequest(), timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "mTLS, tokens" in err           # the serving line says how it is protected
    for role in ("actor", "envserver", "admin"):
        from .conftest import token_of
        assert token_of(good, role) not in err
