"""`atlasrl up` with run.secure: every role behind mTLS and role tokens, and the run still trains.

One short real run (every role a process, real torch learner, held-out eval children). While it runs,
every role's port refuses a plaintext client (the TLS handshake never completes) and a TLS client
without a certificate (mTLS); the coordinator answers a client with the run's certificate but no token
with UNAUTHENTICATED. The run stops as soon as the learner has published policy version 1.
"""
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlasrl.config import load_config
from atlasrl.rpc import ChannelConfig, make_channel
from atlasrl.rpc.config import SecurityConfig
from atlasrl.up import display
from atlasrl.up.plan import role_available
from atlasrl.up.run import UpRun
from atlasrl.v1 import coordinator_pb2, coordinator_pb2_grpc

ROLES = ("coordinator", "envserver", "memory", "learner", "actor")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_config_show_has_run_secure():
    r = subprocess.run([sys.executable, "-m", "atlasrl.up.launch", "config", "show", "--set", "run.secure=true"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "secure: true" in r.stdout


async def health(address: str, sec: SecurityConfig):
    async with make_channel(address, ChannelConfig(security=sec)) as ch:
        return await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=30)


async def refused(address: str, sec: SecurityConfig) -> grpc.StatusCode:
    try:
        await health(address, sec)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def checks(run: UpRun) -> None:
    pki = run.security.pki
    ports = {p.name: p.port for p in run.plan.all()}
    assert {n.split("-")[0] for n in ports} == set(ROLES)
    cert = SecurityConfig(tls_ca=pki / "ca.pem", tls_cert=pki / "client.pem", tls_key=pki / "client-key.pem")
    for name, port in ports.items():
        address = f"127.0.0.1:{port}"
        assert await refused(address, SecurityConfig()) == grpc.StatusCode.UNAVAILABLE, f"{name} answered plaintext"
        assert await refused(address, SecurityConfig(tls_ca=pki / "ca.pem")) == grpc.StatusCode.UNAVAILABLE, \
            f"{name} answered a TLS client without a certificate"
        assert (await health(address, cert)).status == health_pb2.HealthCheckResponse.SERVING  # health needs no token
    async with make_channel(run.plan.coordinator_address, ChannelConfig(security=cert)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await coordinator_pb2_grpc.CoordinatorServiceStub(ch).GetStatus(coordinator_pb2.GetStatusRequest(), timeout=30)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

    deadline = time.monotonic() + 600
    while display.policy_version(await run.client.status()) < 1:  # the admin channel of the run works
        assert time.monotonic() < deadline, "no policy version 1 from the learner"
        await asyncio.sleep(1.0)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(not all(role_available(r) for r in ROLES[1:]), reason="needs every role's CLI")
async def test_secure_up_trains_and_refuses_plaintext(tmp_path):
    cfg = load_config(None, [
        f"run.run_dir={tmp_path / 'run'}", "run.secure=true", "run.duration_s=900", "run.eval_episodes=2",
        "run.display=false", "actor.num_envs=4", "actor.group_size=2", "learner.batch_episodes=4",
    ])
    run = UpRun(cfg, fault_hook=checks)
    summary = await run.run()
    assert summary.get("stop_reason") == "fault script finished", summary
    assert "error" not in summary and summary["policy_version"] >= 1, summary
    assert all(v == 0 for v in summary["restarts"].values()), summary["events"]
    assert summary["eval_before"] is not None and summary["eval_after"] is not None, summary["events"]
    argv = json.loads((run.rd.root / "processes.json").read_text())
    for name, args in argv.items():
        role = name.split("-")[0]
        assert "--mtls" in args and args[args.index("--token-file") + 1] == str(run.security.token_file(role)), name
    token_text = (run.security.token_file("admin")).read_text().splitlines()[1].split(":", 1)[1]
    logs = "".join(p.read_text(errors="replace") for p in (run.rd.root / "logs").glob("*.log"))
    assert token_text not in logs and token_text not in json.dumps(argv)
