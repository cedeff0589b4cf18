"""Memory over MiniWorld's continuous space: episodes through a real env server, recorded as the actor records
them, ingested by a real memory server; workspace-grid atlases, goal-relative family atlases, stall danger, the
per-turn overlay on the top-down map and the heading hint, and atlas PNGs over the map."""
import numpy as np
import pytest
from miniworld_scripted import toward

from atlasrl import codec
from atlasrl.actors.episode import EpisodeBuffer
from atlasrl.actors.memory_view import TurnView, risk_word
from atlasrl.atlas_image import overlay_box
from atlasrl.clients.env import EnvClient
from atlasrl.clients.memory import MemoryClient
from atlasrl.envserver import registry
from atlasrl.envserver.miniworld.atlas_map import atlas_over_map
from atlasrl.memory.atlas import Atlas, stalled
from atlasrl.memory.config import AtlasConfig, MemoryConfig, ShapingConfig
from atlasrl.memory.server import MemoryServer
from atlasrl.rpc import ServerConfig
from atlasrl.v1 import trajectory_pb2

pytestmark = pytest.mark.usefixtures("miniworld_ready")
CONFIG = {"top_view": "true", "top_view_size": "96", "turn_step": "45", "forward_step": "0.5", "max_steps": "30"}


def test_stalled_marks_steps_that_end_long_runs_on_one_cell():
    cells = np.array([[0, 0], [0, 1], [0, 1], [0, 1], [0, 1], [1, 1]])
    assert stalled(cells, 3).tolist() == [0, 0, 0, 1, 1, 0]
    a, b = Atlas(2, 2), Atlas(2, 2)
    a.add_episode(cells, True, "success", AtlasConfig(stall_steps=3))
    b.add_episode(cells, True, "success", AtlasConfig())          # off by default: success leaves no danger
    assert a.danger[0, 1] > 0.2 and a.danger[0, 0] == a.danger[1, 1] == 0 and not b.danger.any()
    failed = Atlas(2, 2)                                           # a failure's own mass wins where it is larger
    failed.add_episode(cells, False, "failure", AtlasConfig(stall_steps=3, stall_weight=0.5))
    assert failed.danger.max() <= 1.0 and failed.danger[1, 1] > failed.danger[0, 0]


async def _episode(client: EnvClient, handle: int, spec, seed: int, policy: str) -> tuple[EpisodeBuffer, object]:
    obs = await client.reset(handle, seed=seed)
    ep = EpisodeBuffer(f"e{seed}-{policy}", group_id=f"g{seed}", seed=seed, group_size=1, spec=spec, first_obs=obs.proto)
    goal = next(tuple(e.position) for e in obs.entities if e.kind == "goal")
    while not obs.done:
        action = toward(obs.info["position"], obs.info["heading_deg"], goal, 45) if policy == "scripted" else "turn left"
        obs = await client.step_one(handle, action)
        ep.add_turn(trajectory_pb2.TurnRecord(action_text=action), obs.proto)
    return ep, obs


async def test_atlases_over_positions_through_env_server_and_memory(start_server):
    env_server = await start_server(envs=["miniworld"])
    # layout_trust_episodes=0: a layout's query shows its own atlas once it has an episode (not blended with the family)
    mem_server = MemoryServer(MemoryConfig(server=ServerConfig(port=0), atlas=AtlasConfig(stall_steps=4),
                                           shaping=ShapingConfig(layout_trust_episodes=0)))
    await mem_server.start()
    try:
        async with EnvClient(env_server.address) as envs, MemoryClient(mem_server.address) as mem:
            handle, spec = await envs.open("miniworld:Hallway", CONFIG, seed=0)
            records, spinner = [], None
            for seed in range(6):
                ep, last = await _episode(envs, handle, spec, seed, "scripted")
                records.append(ep.to_memory_record())
            assert sum(r.success for r in records) >= 5, "the scripted navigator should mostly reach the box"
            for seed in (10, 11):
                spinner, last = await _episode(envs, handle, spec, seed, "turn")
                assert last.info["terminal_cause"] == "timeout" and len({o.agent.col for o in spinner.observations}) == 1
                records.append(spinner.to_memory_record())
            summary = await mem.ingest(records)
            assert summary.accepted == len(records), summary
            # the family atlas is goal-relative: a layout never seen gets affinity on the cells before its goal
            fresh = await envs.reset(handle, seed=99)
            goal = next((e.cell.row, e.cell.col) for e in fresh.entities if e.kind == "goal")
            family = await mem.query(spec.family, "never-seen", rows=spec.grid_rows, cols=spec.grid_cols, goal=goal)
            assert family.danger.shape == (4, 12) and family.affinity[goal[0], goal[1] - 1] > 0.3
            # the spinning episodes' start cells carry stall danger in their layouts' atlases
            spun = await mem.query(spec.family, spinner.first_obs.layout_key)
            start = (spinner.first_obs.agent.row, spinner.first_obs.agent.col)
            assert spun.danger[start] > 0.3 and spun.danger[start] == spun.danger.max()
            # per-turn memory channels of the actor: the overlay on the top-down map, the heading hint
            view = TurnView(spun.danger, spun.affinity, overlay=True, risk=True)
            picture = codec.decode(view.hints(spinner.first_obs).overlay)
            top = spinner.first_obs.images[1]
            box = tuple(int(v) for v in spinner.first_obs.info["top_view_grid_box"])
            raw = codec.decode(top)
            assert picture.shape == raw.shape == (96, 96, 3)
            assert not np.array_equal(picture[box[0]:box[1], box[2]:box[3]], raw[box[0]:box[1], box[2]:box[3]])
            assert np.array_equal(picture[:box[0]], raw[:box[0]]) and np.array_equal(picture[box[1]:], raw[box[1]:])
            text = view.annotate(spinner.first_obs)
            here = risk_word(float(spun.danger[start]))
            assert here != "low" and text.splitlines()[-1].startswith(f"Memory: here risk {here}, ahead ")
    finally:
        await mem_server.stop(0)


def test_atlas_png_over_the_top_down_map(miniworld_ready):
    env = registry.make("miniworld:Hallway", {"cell_size": "1.0"}, seed=3)
    try:
        env.text_reset()
        danger = np.zeros((env.grid.rows, env.grid.cols), np.float32)
        danger[0, 0] = 1.0
        affinity = np.zeros_like(danger)
        affinity[-1, -1] = 1.0
        img = atlas_over_map(env, danger, affinity, size=240)
        plain = env.top_view(240, agent=False)
        top, bottom, left, right = env.grid_box(240)
        assert img.shape == (240, 240, 3) and 0 <= top < bottom <= 240 and 0 <= left < right <= 240
        cell_h, cell_w = (bottom - top) // env.grid.rows, (right - left) // env.grid.cols
        corner = img[top + 2:top + cell_h - 2, left + 2:left + cell_w - 2].astype(int)
        goal_corner = img[bottom - cell_h + 2:bottom - 2, right - cell_w + 2:right - 2].astype(int)
        assert corner[..., 0].mean() > corner[..., 1].mean() + 60       # danger: red
        assert goal_corner[..., 1].mean() > goal_corner[..., 0].mean() + 60   # affinity: green
        assert np.array_equal(img[:top], plain[:top])                    # outside the grid: the map untouched
        with pytest.raises(ValueError, match="grid"):
            atlas_over_map(env, danger[:2], affinity[:2])
        assert overlay_box(plain, danger, affinity, (0, 2, 0, 2)).tolist() == plain.tolist()  # too small a box: no-op
    finally:
        env.close()
