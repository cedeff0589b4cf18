"""FrozenLake: determinism, solvability, rewards and termination, slippery ice, text views."""
from __future__ import annotations

from collections import Counter, deque

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasrl.envserver import registry
from atlasrl.envserver.base import InvalidActionText
from atlasrl.envserver.envs.frozenlake import FROZEN, GOAL, generate_map, path_exists
from atlasrl.envserver.envs.grid_actions import ACTIONS, DELTAS


def make(seed=0, **config):
    return registry.make("frozenlake", {k: str(v) for k, v in config.items()}, seed=seed)


def shortest_path(grid_rows: list[str]) -> list[str]:
    """BFS over the text grid (independent of the env's own generator check)."""
    rows, cols = len(grid_rows), len(grid_rows[0])
    start = next((r, row.index("P")) for r, row in enumerate(grid_rows) if "P" in row)
    parents = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if grid_rows[cell[0]][cell[1]] == "G":
            path = []
            while parents[cell] is not None:
                cell, action = parents[cell]
                path.append(action)
            return path[::-1]
        for name, (dr, dc) in zip(ACTIONS, DELTAS):
            nxt = (cell[0] + dr, cell[1] + dc)
            if 0 <= nxt[0] < rows and 0 <= nxt[1] < cols and nxt not in parents \
                    and grid_rows[nxt[0]][nxt[1]] != "O":
                parents[nxt] = (cell, name)
                queue.append(nxt)
    raise AssertionError("no path:\n" + "\n".join(grid_rows))


def grid_of(out) -> list[str]:
    return out.text.splitlines()[:-1]          # the last line is the legend


def play(env, actions: list[str], per_turn: int = 3):
    outs = []
    for i in range(0, len(actions), per_turn):
        outs.append(env.text_step(", ".join(actions[i:i + per_turn]), strict=True))
    return outs


# --- determinism --------------------------------------------------------------------------

@pytest.mark.parametrize("slippery", [False, True])
def test_same_seed_same_maps_frames_and_rewards(slippery):
    runs = []
    for _ in range(2):
        env = make(seed=7, size=6, slippery=slippery)
        trace = []
        for episode_seed in (None, 11):               # the construction seed, then an explicit one
            out = env.text_reset(seed=episode_seed)
            trace.append((out.text, out.layout_key, out.images[0].tobytes()))
            for text in ["Right, Down", "Down", "Right Right", "Down, Down, Right", "Up"]:
                out = env.text_step(text)
                trace.append((out.text, out.reward, out.terminated, out.images[0].tobytes(),
                              out.info.get("moves")))
        runs.append(trace)
    assert runs[0] == runs[1]


def test_reset_without_seed_draws_new_maps_reproducibly():
    def keys():
        env = make(seed=3)
        return [env.text_reset().layout_key for _ in range(6)]
    assert keys() == keys()
    assert len(set(keys())) > 1


def test_open_with_seed_then_reset_without_plays_the_seeded_map():
    seeded = make(seed=21).text_reset(seed=21)
    env = make(seed=21)
    first = env.text_reset()
    assert first.layout_key == seeded.layout_key and first.text == seeded.text
    assert env.text_reset().layout_key != first.layout_key          # later resets draw new maps
    env = make(seed=21)
    env.text_step("Down")
    assert env.text_reset().agent == (0, 0) and env.steps == 0


def test_negative_wire_seeds_are_valid_and_deterministic():
    assert make(seed=-1).layout_key == make(seed=2**64 - 1).layout_key
    assert make(seed=-5).text_reset(seed=-5).text == make(seed=0).text_reset(seed=-5).text


def test_load_map_rejects_bad_maps():
    env = make()
    for rows in (["P___", "____", "____"], ["P__G", "____", "____", "___G"], ["P___", "_x__", "____", "___G"]):
        with pytest.raises(ValueError, match="map"):
            env.load_map(rows)


def test_different_seeds_give_different_maps():
    keys = {make(seed=seed, size=6).text_reset(seed=seed).layout_key for seed in range(30)}
    assert len(keys) >= 25


def test_layout_key_is_a_function_of_the_map():
    a, b = make(seed=1), make(seed=99)
    a.load_map(["P_O_", "__O_", "O___", "___G"])
    b.load_map(["P_O_", "__O_", "O___", "___G"])
    assert a.layout_key == b.layout_key
    b.load_map(["P_O_", "__O_", "O__O", "___G"])
    assert a.layout_key != b.layout_key


# --- solvability --------------------------------------------------------------------------

@pytest.mark.parametrize("size, hole_prob", [(4, 0.2), (8, 0.2), (8, 0.4)])
def test_300_maps_are_solvable_and_the_bfs_path_wins(size, hole_prob):
    env = make(seed=0, size=size, hole_prob=hole_prob)       # default max_steps leaves room to spare
    for seed in range(300):
        out = env.text_reset(seed=seed)
        outs = play(env, shortest_path(grid_of(out)))
        assert outs[-1].success and outs[-1].terminated and not outs[-1].truncated
        assert outs[-1].info["terminal_cause"] == "success"
        assert outs[-1].reward == 1.0 and sum(o.reward for o in outs) == 1.0


@settings(max_examples=60, deadline=None)
@given(size=st.integers(2, 12), hole_prob=st.floats(0.0, 0.6), seed=st.integers(0, 2**63 - 1))
def test_generated_maps_always_connect_start_and_goal(size, hole_prob, seed):
    tiles = generate_map(size, hole_prob, np.random.default_rng(seed))
    assert tiles.shape == (size, size) and tiles[0, 0] == FROZEN and tiles[-1, -1] == GOAL
    assert (tiles == GOAL).sum() == 1
    assert path_exists(tiles, (0, 0), (size - 1, size - 1))
    assert len(shortest_path(["P" + "".join("_OG"[t] for t in tiles[0, 1:])] +
                             ["".join("_OG"[t] for t in row) for row in tiles[1:]])) >= 2 * (size - 1)


def test_high_hole_probability_still_generates_solvable_maps():
    env = make(seed=0, size=8, hole_prob=0.6, max_steps=200)
    for seed in range(20):
        out = env.text_reset(seed=seed)
        assert play(env, shortest_path(grid_of(out)))[-1].success


def test_hole_probability_shapes_the_maps():
    def hole_fraction(p):
        env = make(seed=0, size=8, hole_prob=p)
        return np.mean([sum(e.kind == "hole" for e in env.text_reset(seed=s).entities) / 62 for s in range(50)])
    assert hole_fraction(0.0) == 0.0
    assert 0.1 < hole_fraction(0.2) < 0.3


# --- rewards and termination on a hand-made map -------------------------------------------

MAP = ["P_O_",
       "__O_",
       "O___",
       "___G"]


def test_reaching_the_goal():
    env = make(step_penalty=-0.01, success_reward=5)
    env.load_map(MAP)
    out = env.text_step("Down, Right, Down", strict=True)
    assert out.agent == (2, 1) and not out.terminated and out.reward == pytest.approx(-0.03)
    assert out.info == {"step": 3, "success": False, "action_is_valid": True, "actions_executed": 3,
                        "actions": ["Down", "Right", "Down"]}
    out = env.text_step("Right, Right, Down", strict=True)
    assert out.agent == (3, 3) and out.success and out.terminated and not out.truncated
    assert out.reward == pytest.approx(5 - 0.03) and out.info["terminal_cause"] == "success"


def test_actions_after_the_end_of_the_episode_are_not_executed():
    env = make()
    env.load_map(MAP)
    out = env.text_step("Right, Right, Down", strict=True)
    assert out.info["terminal_cause"] == "hole" and out.info["actions_executed"] == 2
    assert out.agent == (0, 2) and out.terminated and not out.success and out.reward == 0.0
    assert out.step == 2
    after = env.text_step("Left")
    assert after.info["action_is_valid"] is False and "reset" in after.info["invalid_reason"]
    assert after.reward == 0.0 and after.step == 2 and after.agent == (0, 2) and after.terminated


def test_hole_penalty():
    env = make(hole_penalty=-1, step_penalty=-0.5)
    env.load_map(MAP)
    assert env.text_step("Right, Right").reward == pytest.approx(-1 - 1.0)


def test_walking_into_the_edge_stays_in_place_and_costs_a_step():
    env = make(step_penalty=-0.1)
    env.load_map(MAP)
    out = env.text_step("Up, Left", strict=True)
    assert out.agent == (0, 0) and out.step == 2 and out.reward == pytest.approx(-0.2)


def test_timeout_truncates_mid_turn():
    env = make(max_steps=4)
    env.load_map(MAP)
    env.text_step("Down, Up, Down", strict=True)
    out = env.text_step("Up, Down, Up", strict=True)
    assert out.truncated and not out.terminated and not out.success
    assert out.info["terminal_cause"] == "timeout" and out.info["actions_executed"] == 1 and out.step == 4


def test_invalid_text_not_strict_is_a_penalised_noop_turn():
    env = make(step_penalty=-0.01, invalid_penalty=-0.5, max_steps=2)
    env.load_map(MAP)
    out = env.text_step("Fly to the goal")
    assert out.agent == (0, 0) and out.step == 1 and not out.terminated
    assert out.reward == pytest.approx(-0.51)
    assert out.info["action_is_valid"] is False and "'Fly'" in out.info["invalid_reason"]
    assert out.info["actions_executed"] == 0
    out = env.text_step("Up, Up, Up, Up")
    assert "at most 3" in out.info["invalid_reason"] and out.truncated
    assert out.info["terminal_cause"] == "timeout"


def test_invalid_text_strict_raises_and_changes_nothing():
    env = make()
    env.load_map(MAP)
    with pytest.raises(InvalidActionText, match=r"'Jump'.*Up, Down, Left, Right"):
        env.text_step("Down, Jump", strict=True)
    assert env.steps == 0 and env.agent_cell() == (0, 0)


def test_max_actions_per_turn_is_configurable():
    env = make(max_actions_per_turn=1)
    assert env.text_step("Down, Down").info["action_is_valid"] is False
    assert env.text_step("Down").info["action_is_valid"] is True


# --- slippery ice -------------------------------------------------------------------------

def test_slippery_moves_follow_gymnasium_thirds():
    env = make(seed=0, size=8, hole_prob=0.0, slippery=True, max_steps=100_000)
    counts = Counter()
    for _ in range(3000):
        env.load_map(["_" * 8] * 3 + ["___P____"] + ["_" * 8] * 3 + ["_______G"])
        out = env.text_step("Up", strict=True)
        counts[out.info["moves"][0]] += 1
    assert set(counts) == {"Up", "Left", "Right"}          # never the opposite direction
    for direction in ("Up", "Left", "Right"):
        assert 850 < counts[direction] < 1150               # 1/3 each, > 5 sigma margin


def test_not_slippery_by_default():
    env = make(seed=0, size=8, hole_prob=0.0)
    out = env.text_step("Right, Right, Down")
    assert out.agent == (1, 2) and "moves" not in out.info


# --- views --------------------------------------------------------------------------------

def test_grid_text_agent_and_entities_agree():
    out = make(seed=4, size=8).text_reset(seed=4)
    rows = grid_of(out)
    assert out.text.splitlines()[-1].startswith("Legend: P")
    assert rows[out.agent[0]][out.agent[1]] == "P" and out.agent == (0, 0)
    holes = {e.cell for e in out.entities if e.kind == "hole"}
    assert holes == {(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == "O"}
    assert [e.cell for e in out.entities if e.kind == "goal"] == [(7, 7)] and rows[7][7] == "G"


def test_relative_text():
    env = make(text_mode="relative")
    env.load_map(["_O__", "P_O_", "____", "___G"])
    text = env.text_step("Right", strict=True).text
    assert text.splitlines() == ["Goal: 2 down, 2 right.", "Up: hole", "Down: frozen", "Left: frozen",
                                 "Right: hole"]
    env.load_map(["P___", "____", "____", "___G"])
    assert env.text_step("Up", strict=True).text.splitlines()[1:4] == ["Up: edge", "Down: frozen", "Left: edge"]


def test_frames_show_the_state():
    env = make(seed=0, hole_prob=0.0)
    first = env.text_reset(seed=0).images[0]
    moved = env.text_step("Right").images[0]
    assert first.shape == (128, 128, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, moved)
    assert np.array_equal(first[:, 64:], moved[:, 64:])      # only the two touched tiles changed


@pytest.mark.filterwarnings("ignore:.*alternative render modes")
@pytest.mark.parametrize("slippery", [False, True])
def test_gymnasium_env_checker(slippery):
    check_env(make(seed=0, slippery=slippery), skip_render_check=False)


def test_gymnasium_step_api():
    env = make(seed=0, hole_prob=0.0, max_steps=3)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["step"] == 0
    obs, _reward, terminated, truncated, info = env.step(3)
    assert env.agent_cell() == (0, 1) and info["actions"] == ["Right"] and not (terminated or truncated)
    env.step(1)
    *_, terminated, truncated, info = env.step(1)
    assert truncated and not terminated and info["terminal_cause"] == "timeout"
    with pytest.raises(ValueError, match="not in Discrete"):
        env.step(4)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(2, 10), slippery=st.booleans(),
       texts=st.lists(st.text(alphabet="UpDownLeftRight, x", max_size=20), max_size=12))
def test_invariants_under_random_play(seed, size, slippery, texts):
    env = make(seed=seed, size=size, slippery=slippery)
    out = env.text_reset()
    for text in texts:
        before = out
        out = env.text_step(text)
        r, c = out.agent
        assert 0 <= r < size and 0 <= c < size and out.step <= env.max_steps
        assert not (out.terminated and out.truncated)
        assert (out.terminated or out.truncated) == ("terminal_cause" in out.info)
        if before.terminated or before.truncated:
            assert out.step == before.step and out.agent == before.agent
        assert out.layout_key == before.layout_key and out.images[0].shape == (128, 128, 3)
