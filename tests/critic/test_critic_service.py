"""CriticService over real loopback gRPC: the three backends, batching across clients, bad input, registration."""
from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from atlasrl import codec
from atlasrl.clients.critic import CriticClient, frame, oracle_state
from atlasrl.clients.env import EnvClient
from atlasrl.critic.config import CriticConfig
from atlasrl.critic.server import CriticServer
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.server import EnvServer
from atlasrl.rpc import ServerConfig
from atlasrl.v1 import critic_pb2, tensor_pb2

TASK = "reach the goal"


def critic_config(**kw) -> CriticConfig:
    return CriticConfig(server=ServerConfig(port=0), **kw)


async def started(**kw) -> CriticServer:
    server = CriticServer(critic_config(**kw))
    await server.start()
    return server


def rgb(h: int = 32, w: int = 32, value: int = 0) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def shortest_path(obs, spec) -> list[str]:
    """Moves from the agent to the goal around the holes (breadth-first; the map is not slippery)."""
    holes = {(e.cell.row, e.cell.col) for e in obs.entities if e.kind == "hole"}
    goal = next((e.cell.row, e.cell.col) for e in obs.entities if e.kind == "goal")
    start = (obs.agent.row, obs.agent.col)
    moves = {"Up": (-1, 0), "Down": (1, 0), "Left": (0, -1), "Right": (0, 1)}
    paths, frontier = {start: []}, [start]
    while frontier:
        cell = frontier.pop(0)
        for name, (dr, dc) in moves.items():
            nxt = (cell[0] + dr, cell[1] + dc)
            if 0 <= nxt[0] < spec.grid_rows and 0 <= nxt[1] < spec.grid_cols and nxt not in holes and nxt not in paths:
                paths[nxt] = [*paths[cell], name]
                frontier.append(nxt)
    return paths[goal]


async def test_oracle_scores_a_frozenlake_episode_done_exactly_at_success():
    envs = EnvServer(EnvServerConfig(port=0, workers=0))
    await envs.start()
    critic = await started(backend="oracle")
    try:
        async with EnvClient(envs.address, decode_images=False) as env, CriticClient(critic.address) as c:
            handle, spec = await env.open("frozenlake", {"size": "4", "slippery": "false", "image_size": "32"})
            obs = (await env.reset(handle, 0)).proto
            frames, successes = [frame(obs.images[0], oracle_state(obs, spec))], [obs.success]
            for move in shortest_path(obs, spec):
                obs = (await env.step_one(handle, move)).proto
                frames.append(frame(obs.images[0], oracle_state(obs, spec)))
                successes.append(obs.success)
            assert successes[-1] and len(frames) >= 3
            scores = await c.score(spec.instruction, frames, per_message=2)
            info = await c.info()
    finally:
        await critic.stop(0)
        await envs.stop(0)
    assert len(scores) == len(frames)
    assert [s.done_probability == 1.0 for s in scores] == successes
    assert scores[-1].progress == 1.0 and all(0 <= s.progress < 1 for s in scores[:-1])
    assert info.backend == "oracle" and info.frames_scored == len(frames) and not info.pairwise


async def test_bad_input_is_invalid_argument_naming_the_field_and_the_service_keeps_serving():
    critic = await started(backend="value", limits={"max_task_chars": 16, "max_side": 64})
    try:
        async with CriticClient(critic.address) as c:
            cases = {
                "frames[0].image": [critic_pb2.Frame(image=codec.encode(np.zeros((8, 8, 3), np.float32)))],
                "frames[1].image": [frame(rgb()), critic_pb2.Frame(image=codec.encode(np.zeros((8, 8), np.uint8)))],
                "frames[0].image: shape": [frame(rgb(65, 8))],
                "frames": [],
            }
            for field, frames in cases.items():
                with pytest.raises(grpc.RpcError) as e:
                    await c.score(TASK, frames)
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert e.value.details().startswith(field), (field, e.value.details())
            with pytest.raises(grpc.RpcError) as e:
                await c.score("x" * 17, [frame(rgb())])
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith("task:")
            lying = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_UINT8, shape=[8, 8, 3], codec=tensor_pb2.CODEC_RAW,
                                      data=b"\0" * 10)
            with pytest.raises(grpc.RpcError) as e:
                await c.score(TASK, [critic_pb2.Frame(image=lying)])
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "frames[0].image" in e.value.details()
            scores = await c.score(TASK, [frame(rgb()), frame(rgb(value=200))])   # still serving
            assert len(scores) == 2 and all(0 <= s.progress <= 1 and 0 <= s.done_probability <= 1 for s in scores)
    finally:
        await critic.stop(0)


async def test_oracle_needs_the_state_with_each_frame():
    critic = await started(backend="oracle")
    try:
        async with CriticClient(critic.address) as c:
            with pytest.raises(grpc.RpcError) as e:
                await c.score(TASK, [frame(rgb())])
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith("frames[0].oracle")
    finally:
        await critic.stop(0)


async def test_frames_of_concurrent_clients_share_model_calls():
    critic = await started(backend="value", max_wait_ms=200, max_batch=8)
    try:
        clients = [CriticClient(critic.address) for _ in range(8)]
        for c in clients:                      # connected first, so the requests arrive together
            await c.info()
        resps = await asyncio.gather(*(c.score_response(TASK, [frame(rgb(value=i))]) for i, c in enumerate(clients)))
        for c in clients:
            await c.close()
    finally:
        await critic.stop(0)
    assert max(r.batch_size for r in resps) >= 4
    assert critic.batcher.batches < 8 and critic.batcher.frames == 8


async def test_last_only_scores_the_last_frame_and_value_scores_do_not_depend_on_the_batch():
    critic = await started(backend="value")
    try:
        async with CriticClient(critic.address) as c:
            frames = [frame(rgb(value=v)) for v in (0, 90, 255)]
            all_scores = await c.score(TASK, frames)
            last = await c.score(TASK, frames, last_only=True)
            delta = await c.compare(TASK, frames[0], frames[2])
    finally:
        await critic.stop(0)
    assert len(last) == 1
    assert last[0].progress == pytest.approx(all_scores[-1].progress, abs=1e-5)
    assert delta == pytest.approx(all_scores[2].progress - all_scores[0].progress, abs=1e-5)


async def test_hf_backend_prompts_a_local_vl_model_as_vlac_does():
    from atlasrl.models.tiny import tiny_model_path

    critic = await started(backend="hf", model=str(tiny_model_path("qwen2.5-vl", seed=0)), hf_max_new_tokens=4)
    try:
        async with CriticClient(critic.address) as c:
            info = await c.info()
            scores = await c.score(TASK, [frame(rgb(28, 28)), frame(rgb(28, 28, 120))])
            delta = await c.compare(TASK, frame(rgb(28, 28)), frame(rgb(28, 28, 120)))
    finally:
        await critic.stop(0)
    assert info.backend == "hf" and info.pairwise
    assert len(scores) == 2 and all(0 <= s.progress <= 1 and 0 <= s.done_probability <= 1 for s in scores)
    assert -1 <= delta <= 1
    # random weights write no number: counted, and read as no progress (never a made-up value)
    assert critic.backend.unparsed >= 1 or any(s.progress > 0 for s in scores)


def test_parse_percent_reads_vlac_answers():
    from atlasrl.critic.backends import parse_percent

    assert parse_percent("+35%") == pytest.approx(0.35)
    assert parse_percent("progress: -12.5") == pytest.approx(-0.125)
    assert parse_percent("250") == 1.0
    assert parse_percent("no idea") is None


async def test_critic_registers_and_actors_find_it_in_their_assignment(tmp_path):
    from atlasrl.clients.coordinator import RoleRegistration
    from atlasrl.coordinator.config import CoordinatorConfig
    from atlasrl.coordinator.server import CoordinatorServer
    from atlasrl.critic.server import _register

    coord = CoordinatorServer(CoordinatorConfig(server=ServerConfig(port=0), state_dir=tmp_path))
    await coord.start()
    critic = await started(backend="oracle")
    reg = actor = None
    try:
        cfg = critic_config(backend="oracle", coordinator=coord.address)
        reg = await _register(cfg, critic)
        actor = await RoleRegistration(coord.address, role="actor", name="a0", address="127.0.0.1:1",
                                       capacity=1).start()
        a = await actor.assignment()
    finally:
        for r in (actor, reg):
            if r is not None:
                await r.close()
        await critic.stop(0)
        await coord.stop(0)
    assert a.critic_address == critic.address
