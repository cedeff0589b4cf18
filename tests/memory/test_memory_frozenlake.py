"""End to end: FrozenLake 8x8 through the real env server into the real memory; danger finds the holes."""
import numpy as np

from atlasrl.clients.env import EnvClient
from atlasrl.clients.memory import MemoryClient
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.server import EnvServer
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.server import MemoryServer
from atlasrl.rpc import ServerConfig
from atlasrl.v1 import memory_pb2

MOVES = ["Up", "Down", "Left", "Right"]


async def test_random_policy_episodes_make_danger_concentrate_on_holes():
    envs_server = EnvServer(EnvServerConfig(port=0, workers=0, envs=["frozenlake"]))
    mem_server = MemoryServer(MemoryConfig(server=ServerConfig(port=0)))
    await envs_server.start()
    await mem_server.start()
    rng = np.random.default_rng(0)
    entered: set = set()
    try:
        async with EnvClient(envs_server.address) as envs, MemoryClient(mem_server.address) as mem:
            handle, spec = await envs.open("frozenlake", {"size": "8"}, seed=5)
            assert spec.family == "frozenlake"
            for _ in range(40):
                obs = await envs.reset(handle, seed=5)  # the same map every episode
                first = obs
                rec = memory_pb2.EpisodeRecord(family=spec.family, layout_key=obs.layout_key, grid_rows=spec.grid_rows,
                                               grid_cols=spec.grid_cols, entities=list(first.entities))
                rec.steps.add().agent.CopyFrom(obs.proto.agent)
                while not obs.done:
                    obs = await envs.step_one(handle, MOVES[rng.integers(4)])
                    rec.steps.add(action="", reward=obs.reward).agent.CopyFrom(obs.proto.agent)
                rec.success, rec.truncated = obs.success, obs.truncated
                rec.terminal_cause = str(obs.info.get("terminal_cause", ""))
                rec.key_frames.add(step=len(rec.steps) - 1, image=obs.proto.images[0])
                if rec.terminal_cause == "hole":
                    entered.add(obs.agent)
                summary = await mem.ingest([rec])
                assert summary.accepted == 1, summary
            holes = {(e.cell.row, e.cell.col) for e in first.entities if e.kind == "hole"}
            view = await mem.query("frozenlake", first.layout_key, frame=first.images[0], top_k=2, overlay=True)
    finally:
        await mem_server.stop(0)
        await envs_server.stop(0)
    assert len(entered) >= 3 and entered <= holes
    top = np.argsort(-view.danger.ravel(), kind="stable")[: len(entered)]
    hits = sum((int(i) // 8, int(i) % 8) in holes for i in top)
    assert hits / len(entered) >= 0.75, (hits, len(entered), view.danger.round(2))
    assert min(view.danger[c] for c in entered) > view.danger[0, 0]  # entered holes beat the start cell
    assert any("in a hole: avoid" in s.text for s in view.skills)
    assert view.overlay.shape == first.images[0].shape and len(view.exemplars) == 2
