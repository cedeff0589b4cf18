"""FrozenLake tasks where memory must matter: hidden_holes and layout_pool.

The policy's side (text, frame, entities, spec) must be the same on every layout of a pool, while the env's
layout_key (what the memory keys on) tells the true layouts apart; falling in a hidden hole still says "hole".
"""
from __future__ import annotations

import numpy as np
import pytest

from atlasrl.envserver import registry
from atlasrl.envserver.base import EnvConfigError
from atlasrl.envserver.convert import observation_to_proto, spec_to_proto
from atlasrl.envserver.envs.frozenlake import AGENT_IN_HIDDEN_HOLE, HOLE, pool_layout
from atlasrl.envserver.envs.grid_actions import DELTAS

LAKE = ["P___",
        "_O__",
        "__O_",
        "O__G"]
LAKE_WITHOUT_HOLES = [row.replace("O", "_") for row in LAKE]
TASK = {"hidden_holes": "true", "layout_pool": "32", "hole_prob": "0.3"}


def make(seed=0, **config):
    return registry.make("frozenlake", {k: str(v).lower() if isinstance(v, bool) else str(v)
                                        for k, v in config.items()}, seed=seed)


def loaded(rows, **config):
    env = make(0, **config)
    env.load_map(rows)
    return env


def policy_view(out):
    """Everything an observation carries to the actor except layout_key (which the memory alone uses)."""
    proto = observation_to_proto(out)[0]
    proto.ClearField("layout_key")
    return proto.SerializeToString(deterministic=True)


# --- hidden_holes -------------------------------------------------------------------------

@pytest.mark.parametrize("text_mode", ["grid", "relative", "none"])
def test_hidden_holes_look_and_read_exactly_like_ice(text_mode):
    with_holes = loaded(LAKE, hidden_holes=True, text_mode=text_mode)
    plain_ice = loaded(LAKE_WITHOUT_HOLES, hidden_holes=True, text_mode=text_mode)
    for action in ("Down", "Down", "Right"):             # past the hole at (3,0), to (2,1) between two holes
        assert policy_view(with_holes.text_step(action)) == policy_view(plain_ice.text_step(action))
    assert not with_holes.terminated
    assert with_holes.layout_key != plain_ice.layout_key                                          # the memory's key
    if text_mode == "relative":
        assert "hole" not in with_holes.text()
    if text_mode == "grid":
        assert "O" not in with_holes.text().replace("some hides a hole", "")


def test_visible_holes_are_unchanged():
    env = loaded(LAKE)
    assert env.text().splitlines()[1] == "_O__" and "O hole" in env.text()
    assert sorted(e.cell for e in env.entities() if e.kind == "hole") == [(1, 1), (2, 2), (3, 0)]
    assert not np.array_equal(env.render(), loaded(LAKE_WITHOUT_HOLES).render())


def test_falling_into_a_hidden_hole_still_says_hole():
    env = loaded(LAKE, hidden_holes=True, hole_penalty=-1, text_mode="none", outcome_text=True)
    out = env.text_step("Down, Right")                 # (1,0) then the hole at (1,1)
    assert out.terminated and not out.success and out.reward == -1
    assert out.info["terminal_cause"] == "hole" and env.terminal_cause == "hole"
    assert out.text.startswith("You moved down. You moved right and fell into a hole.")
    # The frame shows the greyed agent on plain ice: the hole sprite never appears.
    codes = env.tile_codes()
    assert codes[1, 1] == AGENT_IN_HIDDEN_HOLE and not (codes == HOLE).any()
    tile = env._renderer.tile
    assert np.array_equal(out.images[0][tile:2 * tile, tile:2 * tile], env._renderer.atlas[AGENT_IN_HIDDEN_HOLE])
    assert [e.kind for e in out.entities] == ["goal"]


def test_hidden_holes_instruction_says_holes_are_unseen():
    spec = make(hidden_holes=True).spec_info()
    assert "cannot see" in spec.instruction and "(O)" not in spec.instruction
    assert "cannot see" in make(hidden_holes=True, text_mode="none").spec_info().instruction


def test_memory_learns_hidden_holes_from_terminal_causes():
    """The memory record of a hidden-hole episode names no hole, yet the layout's danger map finds it: danger
    comes from where episodes end and why (atlasrl/memory/atlas.py), keyed by the env's true layout_key."""
    from atlasrl.actors.episode import EpisodeBuffer
    from atlasrl.memory.config import MemoryConfig
    from atlasrl.memory.records import episode_from_record
    from atlasrl.memory.state import MemoryState
    from atlasrl.v1 import trajectory_pb2

    cfg = MemoryConfig()
    state = MemoryState(cfg)
    env = make(0, layout_pool=1, hidden_holes=True, hole_prob=0.3)   # one layout, replayed with every seed
    hole, moves = path_into_a_hole(env.tiles)
    spec = spec_to_proto(env.spec_info())
    for seed in range(6):
        ep = EpisodeBuffer(f"e{seed}", group_id=f"g{seed}", seed=seed, group_size=1, spec=spec,
                           first_obs=observation_to_proto(env.text_reset(seed=seed))[0])
        for action in moves:
            ep.add_turn(trajectory_pb2.TurnRecord(action_text=action), observation_to_proto(env.text_step(action))[0])
        record = ep.to_memory_record()
        assert record.terminal_cause == "hole" and [e.kind for e in record.entities] == ["goal"]
        assert record.layout_key == env.layout_key
        state.apply(episode_from_record(record, cfg.limits))
    danger = state.view("frozenlake", env.layout_key, 4, 4).danger
    assert danger[hole] == danger.max() > danger[0, 0]


def path_into_a_hole(tiles: np.ndarray) -> tuple[tuple[int, int], list[str]]:
    """A hole and the moves that walk from the start over ice into it (breadth first)."""
    from atlasrl.envserver.envs.grid_actions import ACTIONS

    parents, queue = {(0, 0): None}, [(0, 0)]
    for cell in queue:
        if tiles[cell] == HOLE:
            hole, moves = cell, []
            while parents[cell] is not None:
                cell, move = parents[cell]
                moves.append(move)
            return hole, moves[::-1]
        if cell != (0, 0) and tiles[cell] != 0:
            continue                                          # walk over ice only
        for name, (dr, dc) in zip(ACTIONS, DELTAS):
            nxt = (cell[0] + dr, cell[1] + dc)
            if 0 <= nxt[0] < tiles.shape[0] and 0 <= nxt[1] < tiles.shape[1] and nxt not in parents:
                parents[nxt] = (cell, name)
                queue.append(nxt)
    raise AssertionError("no hole on the map")


# --- layout_pool --------------------------------------------------------------------------

def test_layout_is_a_function_of_pool_seed_and_seed_mod_k():
    k = 8
    envs = [make(seed, layout_pool=k) for seed in range(3 * k)]
    for seed, env in enumerate(envs):
        assert np.array_equal(env.tiles, pool_layout(4, 0.2, 0, seed % k))
        assert env.layout_key == envs[seed % k].layout_key
    assert len({env.layout_key for env in envs}) > k // 2      # the pool holds distinct maps
    other = [make(seed, layout_pool=k, layout_pool_seed=1) for seed in range(k)]
    assert {e.layout_key for e in other}.isdisjoint({e.layout_key for e in envs})   # a held-out pool


def test_layout_pool_reset_paths():
    env = make(3, layout_pool=5)
    assert np.array_equal(env.text_reset().images[0], make(3, layout_pool=5).render())   # first level kept
    env.text_reset(seed=7)
    assert np.array_equal(env.tiles, pool_layout(4, 0.2, 0, 2))
    env.reset()                                              # no seed: a draw from the env's generator
    assert any(np.array_equal(env.tiles, pool_layout(4, 0.2, 0, i)) for i in range(5))
    env.text_reset(seed=-3)                                  # the wire's negative seeds map like any reset
    assert np.array_equal(env.tiles, pool_layout(4, 0.2, 0, (-3 % 2**64) % 5))


def test_pool_layouts_are_solvable_and_shared_read_only():
    from atlasrl.envserver.envs.frozenlake import path_exists

    for i in range(50):
        tiles = pool_layout(4, 0.5, 9, i)
        assert path_exists(tiles, (0, 0), (3, 3)) and not tiles.flags.writeable
    env = make(0, layout_pool=3, hole_prob=0.5, layout_pool_seed=9)
    shared = pool_layout(4, 0.5, 9, 0)
    before = shared.copy()
    env.tiles[...] = HOLE                                     # the env's copy, never the shared layout
    assert np.array_equal(shared, before)


@pytest.mark.parametrize("config, match", [
    ({"layout_pool_seed": "4"}, r"layout_pool_seed=4 has no effect without layout_pool"),
    ({"layout_pool": "-1"}, r"'layout_pool'='-1'"),
    ({"layout_pool": "many"}, r"'layout_pool'='many'"),
    ({"hidden_holes": "maybe"}, r"'hidden_holes'='maybe'"),
])
def test_bad_task_config_names_the_key(config, match):
    with pytest.raises(EnvConfigError, match=match):
        registry.make("frozenlake", config)


def test_policy_observation_does_not_identify_the_layout():
    """Across all layouts of a hidden-hole pool: the same spec, the same first observation, and the same
    observations along any path safe on both layouts; only layout_key differs."""
    k = int(TASK["layout_pool"])
    envs = [make(seed, **TASK) for seed in range(k)]
    specs = {spec_to_proto(e.spec_info()).SerializeToString(deterministic=True) for e in envs}
    firsts = {policy_view(e.text_reset()) for e in envs}
    assert len(specs) == 1 and len(firsts) == 1
    assert len({e.layout_key for e in envs}) == len({e.tiles.tobytes() for e in envs}) > k // 2
    walks = {}
    for e in envs:
        views = []
        for action in ("Right", "Down", "Right", "Down", "Right", "Down"):
            out = e.text_step(action)
            views.append(policy_view(out))
            if out.terminated:
                break
        walks.setdefault(e.terminal_cause, []).append(views)
    for cause, group in walks.items():
        if cause is None:                      # every layout where the walk is safe saw the same observations
            assert all(v == group[0] for v in group)
    assert walks.get("hole"), "no layout of the pool has a hole on the staircase path"


# --- without memory, a fixed path is a gamble -----------------------------------------------

def simple_paths(size: int) -> list[frozenset]:
    """Cells of every self-avoiding path from the start corner to the goal corner (revisits never help)."""
    goal, out = (size - 1, size - 1), []

    def walk(cell, seen):
        if cell == goal:
            out.append(frozenset(seen))
            return
        for dr, dc in DELTAS:
            nxt = (cell[0] + dr, cell[1] + dc)
            if 0 <= nxt[0] < size and 0 <= nxt[1] < size and nxt not in seen:
                seen.add(nxt)
                walk(nxt, seen)
                seen.remove(nxt)
    walk((0, 0), {(0, 0)})
    return out


def fixed_path_safe_share(config: dict[str, str], seeds) -> tuple[float, float]:
    """(best fixed path's share of safe maps, share of maps a per-layout memory can make safe)."""
    holes, safe_somehow = [], 0
    paths = simple_paths(int(config.get("size", 4)))
    for seed in seeds:
        env = make(seed, **config)
        cells = {(int(r), int(c)) for r, c in np.argwhere(env.tiles == HOLE)}
        holes.append(cells)
        safe_somehow += any(not (p & cells) for p in paths)
    best = max(sum(1 for h in holes if not (p & h)) for p in paths)
    return best / len(holes), safe_somehow / len(holes)


def test_without_memory_the_best_fixed_path_is_safe_on_a_minority_of_maps(capsys):
    """With hidden holes every map looks the same, so a policy without cross-episode memory plays one fixed
    path (moves are deterministic and nothing seen tells the layouts apart). Measured, not assumed."""
    seeds = range(200)
    best, with_memory = fixed_path_safe_share(TASK, seeds)
    with capsys.disabled():
        print(f"\n[hidden_holes, layout_pool={TASK['layout_pool']}, hole_prob={TASK['hole_prob']}, "
              f"{len(seeds)} seeds] best fixed path safe on {best:.3f} of maps; a memory of each layout: "
              f"{with_memory:.3f}")
    assert best < 0.5
    assert with_memory == 1.0             # every layout is solvable: knowing it is enough
