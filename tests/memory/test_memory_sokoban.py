"""End to end: Sokoban through the real env server; deadlocked box cells become dead-end skills."""
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


async def test_deadlock_box_cells_become_dead_end_skills():
    envs_server = EnvServer(EnvServerConfig(port=0, workers=0, envs=["sokoban"]))
    mem_server = MemoryServer(MemoryConfig(server=ServerConfig(port=0)))
    await envs_server.start()
    await mem_server.start()
    rng = np.random.default_rng(0)
    deadlock_cells: dict = {}
    try:
        async with EnvClient(envs_server.address) as envs, MemoryClient(mem_server.address) as mem:
            handle, spec = await envs.open("sokoban", {"size": "6", "max_steps": "30"}, seed=3)
            for _ in range(60):
                obs = first = await envs.reset(handle, seed=3)
                rec = memory_pb2.EpisodeRecord(family=spec.family, layout_key=obs.layout_key, grid_rows=spec.grid_rows,
                                               grid_cols=spec.grid_cols, entities=[e for e in first.entities if e.kind != "box"])
                while True:
                    step = rec.steps.add(entities=[e for e in obs.entities if e.kind == "box"])
                    step.agent.CopyFrom(obs.proto.agent)
                    if obs.done:
                        break
                    obs = await envs.step_one(handle, MOVES[rng.integers(4)])
                rec.success, rec.truncated = obs.success, obs.truncated
                rec.terminal_cause = str(obs.info.get("terminal_cause", ""))
                if rec.terminal_cause == "deadlock":
                    for e in obs.entities:
                        if e.kind == "box":
                            deadlock_cells[(e.cell.row, e.cell.col)] = deadlock_cells.get((e.cell.row, e.cell.col), 0) + 1
                assert (await mem.ingest([rec])).accepted == 1
            view = await mem.query("sokoban", first.layout_key)
    finally:
        await mem_server.stop(0)
        await envs_server.stop(0)
    targets = {(e.cell.row, e.cell.col) for e in first.entities if e.kind == "target"}
    rules = [s for s in view.skills if s.kind == "entity_dead_end"]
    assert rules, [s.text for s in view.skills]
    for rule in rules:
        cell = (rule.cells[0].row, rule.cells[0].col)
        assert cell not in targets and deadlock_cells.get(cell, 0) == rule.support >= 3
        assert f"a box left at ({cell[0]},{cell[1]}), which is not a target, ended {rule.support} episodes in a deadlock" in rule.text
