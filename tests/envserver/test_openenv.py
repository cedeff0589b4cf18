"""The env server's OpenEnv side, driven by openenv-core's own GenericEnvClient (loopback only)."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("openenv.core", reason="needs the 'openenv' extra (openenv-core)")

from openenv.core import GenericEnvClient
from PIL import Image
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from atlasrl.clients.env import EnvClient
from atlasrl.rpc import RemoteError

pytestmark = pytest.mark.timeout(120)

ENVS = ["frozenlake", "sokoban"]


async def _server(start_server, **overrides):
    return await start_server(envs=ENVS, openenv_port=0, **overrides)


def _post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status


async def test_frozenlake_reset_step(start_server):
    server = await _server(start_server)
    async with GenericEnvClient(base_url=server.openenv.url) as env:
        r = await env.reset(env_id="frozenlake", seed=3, config={"size": 4}, image_format="list")
        obs = r.observation
        assert r.done is False and r.reward == 0.0
        assert obs["env_id"] == "frozenlake" and obs["step"] == 0 and obs["success"] is False
        assert obs["text"].startswith("P___")
        assert np.asarray(obs["image"], np.uint8).shape == tuple(obs["image_shape"]) == (128, 128, 3)
        r = await env.step({"action": "Right"})
        assert r.observation["text"].startswith("_P__")
        assert r.observation["step"] == 1 and r.observation["info"]["action_is_valid"] is True
        assert (await env.state())["step_count"] == 1
        r = await env.reset(seed=3, image_format="png")
        assert _png(r.observation["image"]).shape == (128, 128, 3) and r.observation["image_format"] == "png"
        r = await env.step({"action": "Down"})  # into the hole below the start
        assert r.done is True and r.observation["terminated"] is True and r.observation["success"] is False
        with pytest.raises(RuntimeError, match="FAILED_PRECONDITION"):
            await env.step({"action": "Right"})  # the episode has ended: reset first
    await asyncio.sleep(0.05)
    assert server.manager.live == 0 and server.manager.steps_total == 2


async def test_sokoban_and_the_default_env(start_server, monkeypatch):
    from atlasrl.envserver import openenv_service

    monkeypatch.setattr(openenv_service, "INLINE_IMAGE_BYTES", 0)  # frames converted in a thread, as large ones are
    server = await _server(start_server, openenv_env="sokoban")
    async with GenericEnvClient(base_url=server.openenv.url) as env:
        r = await env.reset()  # no env_id: --openenv-env
        assert r.observation["env_id"] == "sokoban" and "#" in r.observation["text"]
        r = await env.step({"action": "Up"})
        assert r.observation["step"] == 1 and r.reward is not None
        as_list = await env.reset(seed=5, image_format="list")
        as_png = await env.reset(seed=5, image_format="png")
        assert np.array_equal(np.asarray(as_list.observation["image"], np.uint8), _png(as_png.observation["image"]))
        r = await env.reset(env_id="frozenlake", seed=1)  # another env id: the session's env is replaced
        assert r.observation["env_id"] == "frozenlake"
        assert server.manager.live == 1
    server2 = await _server(start_server)
    async with GenericEnvClient(base_url=server2.openenv.url) as env:
        r = await env.reset()
        assert r.observation["env_id"] == "frozenlake"  # default: the first --env entry
        assert r.observation["image_format"] == "png" and _png(r.observation["image"]).shape == (128, 128, 3)


async def test_capacity_is_shared_with_grpc(start_server):
    server = await _server(start_server, max_envs=2)
    a, b = GenericEnvClient(base_url=server.openenv.url), GenericEnvClient(base_url=server.openenv.url)
    async with EnvClient(server.address) as grpc_client, a, b:
        h, _ = await grpc_client.open("frozenlake", seed=0)  # one of the two slots
        await a.reset(env_id="frozenlake", seed=0)
        with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
            await b.reset(env_id="sokoban", seed=0)
        with pytest.raises(RemoteError):
            await grpc_client.open("sokoban")
        assert (await a.step({"action": "Right"})).observation["step"] == 1  # the others keep working
        await grpc_client.reset(h)
        await grpc_client.close([h])
        assert (await b.reset(env_id="sokoban", seed=0)).observation["env_id"] == "sokoban"  # the same connection, now served
        assert server.manager.live == 2
    await asyncio.sleep(0.05)
    assert server.manager.live == 0


async def test_bad_actions_and_unknown_env_keep_the_connection(start_server):
    server = await _server(start_server)
    async with GenericEnvClient(base_url=server.openenv.url) as env:
        with pytest.raises(RuntimeError, match="FAILED_PRECONDITION"):
            await env.step({"action": "Right"})  # no reset yet
        with pytest.raises(RuntimeError, match=r"NOT_FOUND.*nope"):
            await env.reset(env_id="nope")
        with pytest.raises(RuntimeError, match="NOT_FOUND"):
            await env.reset(env_id="maniskill:PickCube-v1")  # registered, but not among --env
        with pytest.raises(RuntimeError, match=r"INVALID_ARGUMENT.*size"):
            await env.reset(env_id="frozenlake", config={"size": "huge"})
        with pytest.raises(RuntimeError, match=r"INVALID_ARGUMENT.*unknown reset arguments"):
            await env.reset(env_id="frozenlake", colour="red")
        await env.reset(env_id="frozenlake", seed=3)
        with pytest.raises(RuntimeError, match="VALIDATION_ERROR"):
            await env.step({"move": "Right"})  # not the action schema
        with pytest.raises(RuntimeError, match="VALIDATION_ERROR"):
            await env.step({"action": ["Right"]})
        with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
            await env.step({"action": "Fly", "strict": True})
        r = await env.step({"action": "Fly"})  # lenient: a penalised no-op turn
        assert r.observation["info"]["action_is_valid"] is False
        assert (await env.step({"action": "Right"})).observation["text"].startswith("_P__")


async def test_malformed_json_and_http(start_server):
    server = await _server(start_server)
    ws_url = server.openenv.url.replace("http://", "ws://") + "/ws"
    async with ws_connect(ws_url) as ws:
        await ws.send("{not json")
        err = json.loads(await ws.recv())
        assert err["type"] == "error" and err["data"]["code"] == "INVALID_JSON"
        await ws.send(json.dumps({"type": "dance"}))
        assert json.loads(await ws.recv())["data"]["code"] == "UNKNOWN_TYPE"
        await ws.send(json.dumps({"type": "reset", "data": {"env_id": "sokoban", "seed": 2}}))
        ok = json.loads(await ws.recv())
        assert ok["type"] == "observation" and ok["data"]["observation"]["env_id"] == "sokoban"
    url = server.openenv.url
    status, _ = await asyncio.to_thread(_post, url + "/step", b"{oops")
    assert status == 422
    status, body = await asyncio.to_thread(_post, url + "/reset", json.dumps({"env_id": "frozenlake", "seed": 1}).encode())
    assert status == 200 and body["observation"]["env_id"] == "frozenlake"  # stateless HTTP reset: opened and closed
    assert await asyncio.to_thread(_status, url + "/health") == 200
    await asyncio.sleep(0.05)
    assert server.manager.live == 0


async def test_bearer_token_required_when_configured(start_server, monkeypatch):
    from atlasrl.envserver.openenv_service import authorize

    token = "actor-token-0123456789"
    monkeypatch.setenv("ATLASRL_TOKENS", f"actor:{token}")
    server = await _server(start_server)
    url = server.openenv.url
    status, _ = await asyncio.to_thread(_post, url + "/reset", b"{}")
    assert status == 401
    status, _ = await asyncio.to_thread(_post, url + "/reset", b"{}", {"Authorization": "Bearer wrong-token-000000000"})
    assert status == 401
    assert await asyncio.to_thread(_status, url + "/health") == 200
    with pytest.raises(ConnectionError):  # OpenEnv's client sends no token: the handshake is refused
        await GenericEnvClient(base_url=url).connect()
    env = GenericEnvClient(base_url=url)
    await authorize(env, token)
    async with env:
        assert (await env.reset(seed=0)).observation["env_id"] == "frozenlake"
    status, _ = await asyncio.to_thread(_post, url + "/reset", b"{}", {"Authorization": f"Bearer {token}"})
    assert status == 200


def test_cli_process_serves_openenv():
    proc = subprocess.Popen([sys.executable, "-m", "atlasrl.cli.main", "envserver", "--port", "0", "--workers", "1",
                             "--env", "sokoban,frozenlake", "--openenv-port", "0", "--grace", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        assert proc.stderr is not None
        for _ in range(20):
            line = proc.stderr.readline()
            if not line:
                break
            if line.startswith("openenv on "):
                url = line.split()[2]
                break
        assert url and url.startswith("http://127.0.0.1:"), "the envserver did not announce its OpenEnv address"
        with GenericEnvClient(base_url=url).sync() as env:
            r = env.reset()
            assert r.observation["env_id"] == "sokoban"  # the first --env entry
            r = env.step({"action": "Down"})
            assert r.observation["step"] == 1
            r = env.reset(env_id="frozenlake", seed=3)
            assert env.step({"action": "Right"}).observation["text"].startswith("_P__")
    finally:
        proc.terminate()
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.maniskill
@pytest.mark.timeout(300)
async def test_maniskill_two_cameras(start_server):
    from tests.maniskill.conftest import require_maniskill

    require_maniskill()
    server = await start_server(envs=["maniskill"], openenv_port=0, threads=2)
    async with GenericEnvClient(base_url=server.openenv.url) as env:
        r = await env.reset(env_id="maniskill:StackCube-v1", seed=3, config={"image_size": 64})
        obs = r.observation
        assert obs["text"].startswith("Task:") and obs["image_shape"] == [64, 64, 3]
        assert _png(obs["image"]).shape == (64, 64, 3)
        [(name, extra)] = obs["extra_images"].items()  # StackCube adds the hand camera
        assert name != "base_camera" and _png(extra).shape == (64, 64, 3)
        r = await env.step({"action": " ".join(["500"] * 7)})  # 7 integer codes in 0..1000: a hold
        assert r.observation["info"]["action_is_valid"] is True and r.observation["step"] == 1
        with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
            await env.step({"action": "500 500", "strict": True})


async def test_idle_timeout_closes_the_socket_and_frees_its_env(start_server):
    """The env server's idle_timeout_s holds for OpenEnv sessions as for gRPC streams: a silent WebSocket is closed
    and its env's slot returns; a session that keeps talking is not touched."""
    server = await _server(start_server, idle_timeout_s=0.5, max_envs=1)
    quiet = GenericEnvClient(base_url=server.openenv.url)
    async with quiet:
        await quiet.reset(env_id="frozenlake", seed=0)
        assert server.manager.live == 1
        await asyncio.sleep(1.2)
        assert server.manager.live == 0                       # closed by the server, slot freed
        with pytest.raises(ConnectionClosed, match="1001"):     # the socket is gone: closed as idle
            await quiet.step({"action": "Right"})
    busy = GenericEnvClient(base_url=server.openenv.url)
    async with busy:
        await busy.reset(env_id="frozenlake", seed=0)        # the freed slot (max_envs=1) serves a new session
        for _ in range(4):
            await asyncio.sleep(0.3)                          # under the timeout each time, 1.2 s in all
            await busy.step({"action": "Left"})
        assert server.manager.live == 1


async def test_openenv_steps_count_in_the_env_metrics(start_server):
    from tests.envserver.test_lifecycle import _scrape, _value

    server = await _server(start_server, metrics_port=0)
    async with GenericEnvClient(base_url=server.openenv.url) as env:
        await env.reset(env_id="frozenlake", seed=3)
        for _ in range(2):
            await env.step({"action": "Right"})
        with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
            await env.step({"action": "Fly", "strict": True})
        text = _scrape(server.metrics_port)
        assert _value(text, 'atlasrl_env_steps_total{env_id="frozenlake"}') == 2
        assert _value(text, 'atlasrl_env_resets_total{env_id="frozenlake"}') == 1
        assert _value(text, 'atlasrl_env_live_sessions{protocol="openenv"}') == 1
        assert _value(text, "atlasrl_env_live_envs") == 1
        assert _value(text, 'atlasrl_env_errors_total{code="INVALID_ARGUMENT",op="step"}') == 1
