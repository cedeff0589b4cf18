"""Sokoban: reverse-play generation is solvable, determinism, pushing rules, deadlocks, text views."""
from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasrl.envserver import registry
from atlasrl.envserver.base import InvalidActionText
from atlasrl.envserver.envs.sokoban import is_deadlocked
from atlasrl.envserver.envs.sokoban_gen import generate_room
from atlasrl.envserver.envs.sokoban_solver import solve


def make(seed=0, **config):
    return registry.make("sokoban", {k: str(v) for k, v in config.items()}, seed=seed)


def play(env, actions: list[str], per_turn: int = 3):
    return [env.text_step(", ".join(actions[i:i + per_turn]), strict=True)
            for i in range(0, len(actions), per_turn)]


def solve_env(env):
    return solve(env.walls, env.targets, env.boxes, env.agent_cell())


# --- solvability: the solver's plan, replayed through the env, wins ---------------------------

@pytest.mark.parametrize("size, num_boxes, seeds", [(6, 1, 100), (7, 2, 30), (8, 3, 8)])
def test_generated_rooms_are_solvable(size, num_boxes, seeds):
    env = make(seed=0, size=size, num_boxes=num_boxes)       # default max_steps leaves room to spare
    for seed in range(seeds):
        start = env.text_reset(seed=seed)
        assert start.info["boxes_on_target"] < num_boxes and not start.info["deadlock"]
        plan = solve_env(env)
        assert plan, f"seed {seed} unsolvable:\n{start.text}"
        outs = play(env, plan)
        assert all(not o.terminated for o in outs[:-1])
        assert outs[-1].success and outs[-1].info["terminal_cause"] == "success"
        assert outs[-1].info["boxes_on_target"] == num_boxes


def test_generator_respects_size_and_box_count():
    for size, num_boxes in [(5, 1), (6, 1), (8, 2), (10, 3), (12, 4)]:
        room = generate_room(size, num_boxes, np.random.default_rng(size))
        assert room.walls.shape == (size, size)
        assert room.boxes.sum() == room.targets.sum() == num_boxes
        assert room.walls[[0, -1], :].all() and room.walls[:, [0, -1]].all()
        assert not (room.walls & (room.boxes | room.targets)).any()
        assert not room.walls[room.player] and not room.boxes[room.player]


@pytest.mark.slow
def test_large_rooms_are_solvable():
    env = make(seed=0, size=10, num_boxes=3)
    for seed in range(10):
        env.text_reset(seed=seed)
        assert play(env, solve_env(env))[-1].success


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), shape=st.sampled_from([(5, 1), (6, 1), (6, 2), (7, 1), (7, 2)]))
def test_any_seed_gives_a_solvable_room(seed, shape):
    size, num_boxes = shape
    env = make(seed=seed, size=size, num_boxes=num_boxes)
    assert play(env, solve_env(env))[-1].success


# --- determinism ------------------------------------------------------------------------------

def test_same_seed_same_rooms_frames_and_rewards():
    def trace():
        env = make(seed=5, size=7, num_boxes=2, box_on_target_reward=0.5)
        rows = []
        for episode_seed in (None, 9):
            out = env.text_reset(seed=episode_seed)
            rows.append((out.text, out.layout_key, out.images[0].tobytes()))
            for text in ["Left, Up", "Up Up Right", "Down", "Right, Right", "Left Left Left"]:
                out = env.text_step(text)
                rows.append((out.text, out.reward, out.terminated, out.images[0].tobytes(), out.agent))
        return rows
    assert trace() == trace()


def test_different_seeds_give_different_rooms():
    keys = {make(seed=seed).layout_key for seed in range(30)}
    assert len(keys) >= 25


def test_load_level_rejects_bad_levels():
    env = make(size=6)
    for rows in (["######"] * 5, ["######", "#P_P_#", "#_X_O#", "#____#", "#____#", "######"],
                 ["_#####", "#P___#", "#_X_O#", "#____#", "#____#", "######"],
                 ["######", "#P___#", "#_Y_O#", "#____#", "#____#", "######"]):
        with pytest.raises(ValueError, match="level"):
            env.load_level(rows)


# --- rules on a hand-made room ----------------------------------------------------------------

ROOM = ["#######",
        "#_____#",
        "#_X_O_#",
        "#_P___#",
        "#__X_O#",
        "#_____#",
        "#######"]


def test_pushing_rules_and_rewards():
    env = make(size=7, num_boxes=2, box_on_target_reward=0.25, step_penalty=-0.01, success_reward=10)
    env.load_level(ROOM)
    # Step below-left of the box at (4,3) and push it right twice, onto the target at (4,5).
    out = env.text_step("Down, Right", strict=True)
    assert out.agent == (4, 3) and env.boxes[4, 4] and out.reward == pytest.approx(-0.02)
    out = env.text_step("Right", strict=True)
    assert out.agent == (4, 4) and env.boxes[4, 5] and out.info["boxes_on_target"] == 1
    assert out.reward == pytest.approx(0.25 - 0.01) and out.text.splitlines()[4] == "#___P√#"
    # The box is against the wall: pushing it again wastes a step.
    out = env.text_step("Right", strict=True)
    assert out.agent == (4, 4) and env.boxes[4, 5] and out.reward == pytest.approx(-0.01) and out.step == 4
    # Walk round to the left of the box at (2,2) and push it onto the target at (2,4).
    out = env.text_step("Up, Left, Left", strict=True)
    assert out.agent == (3, 2) and not out.terminated
    out = env.text_step("Left, Up, Right", strict=True)
    assert out.agent == (2, 2) and env.boxes[2, 3] and not out.terminated
    out = env.text_step("Right, Down", strict=True)
    assert out.info["actions_executed"] == 1 and out.agent == (2, 3)
    assert out.success and out.terminated and out.info["terminal_cause"] == "success"
    assert out.reward == pytest.approx(10 + 0.25 - 0.01) and out.step == 11


def test_pushing_a_box_off_a_target_undoes_the_shaping_reward():
    env = make(size=6, box_on_target_reward=0.25)
    env.load_level(["######", "#P√_O#", "#____#", "#____#", "#____#", "######"])
    out = env.text_step("Right", strict=True)
    assert env.boxes[1, 3] and out.reward == pytest.approx(-0.25) and out.info["boxes_on_target"] == 0
    out = env.text_step("Right", strict=True)                # into a corner, but a target one
    assert out.reward == pytest.approx(0.25) and not out.info["deadlock"] and not out.terminated


def test_solving_hand_made_room_with_solver_plan():
    env = make(size=7, num_boxes=2, box_on_target_reward=0.25, success_reward=10, step_penalty=-0.01)
    env.load_level(ROOM)
    plan = solve_env(env)
    outs = play(env, plan)
    assert outs[-1].success and outs[-1].terminated and not outs[-1].truncated
    total = sum(o.reward for o in outs)
    assert total == pytest.approx(10 + 2 * 0.25 - 0.01 * len(plan))


def test_walls_block_the_player():
    env = make(size=6)
    env.load_level(["######", "#P___#", "#____#", "#_X_O#", "#____#", "######"])
    out = env.text_step("Up, Left", strict=True)
    assert out.agent == (1, 1) and out.step == 2 and not out.terminated


def test_box_blocked_by_box_does_not_move():
    env = make(size=6, num_boxes=2)
    env.load_level(["######", "#PXX_#", "#____#", "#__OO#", "#____#", "######"])
    out = env.text_step("Right", strict=True)
    assert out.agent == (1, 1) and env.boxes[1, 2] and env.boxes[1, 3]


# --- deadlocks --------------------------------------------------------------------------------

CORNER = ["######",
          "#____#",
          "#_X__#",
          "#P__O#",
          "#____#",
          "######"]


def test_corner_deadlock():
    env = make(size=6, deadlock_penalty=-2, step_penalty=-0.1)
    env.load_level(CORNER)
    out = env.text_step("Up", strict=True)                          # player (2,1), box at (2,2) to the right
    assert not out.info["deadlock"]
    out = env.text_step("Down, Right, Up, Down", strict=False)      # too many: a no-op turn
    assert out.info["action_is_valid"] is False and out.agent == (2, 1) and out.step == 2
    out = env.text_step("Down, Right, Up", strict=True)             # (3,1)->(3,2)->push (2,2) up to (1,2)
    assert env.boxes[1, 2] and out.info["deadlock"] is False        # against the top wall only
    out = env.text_step("Right, Up, Left", strict=True)             # to (1,3), push (1,2) into corner (1,1)
    assert out.info["deadlock"] is True and out.terminated and not out.success
    assert out.info["terminal_cause"] == "deadlock"
    assert out.reward == pytest.approx(-2 - 0.3)


def test_deadlock_can_be_reported_without_ending_the_episode():
    env = make(size=6, deadlock_ends_episode="false")
    env.load_level(["######", "#_X__#", "#P___#", "#___O#", "#____#", "######"])
    out = env.text_step("Up, Right", strict=True)                  # push (1,2) right to (1,3): wall above only
    assert out.agent == (1, 2) and not out.info["deadlock"]
    out = env.text_step("Right", strict=True)                      # to (1,4): top-right corner
    assert out.info["deadlock"] is True and not out.terminated and "terminal_cause" not in out.info
    assert env.text_step("Down").info["deadlock"] is True          # stays reported


@pytest.mark.parametrize("rows, box, expected", [
    (["#####", "#X__#", "#___#", "#__O#", "#####"], (1, 1), True),      # corner, no target
    (["#####", "#√__#", "#___#", "#_X_#", "#####"], (1, 1), False),     # corner on a target
    (["#####", "#_X_#", "#___#", "#__O#", "#####"], (1, 2), False),     # wall on one side only
    (["#####", "#XX_#", "#___#", "#OO_#", "#####"], (1, 2), True),      # 2x2 of wall + boxes
    (["#####", "#√√_#", "#___#", "#___#", "#####"], (1, 2), False),     # the same square, all on targets
    (["######", "#____#", "#_XX_#", "#_XX_#", "#OOOO#", "######"], (2, 2), True),  # 2x2 block of boxes
])
def test_is_deadlocked(rows, box, expected):
    cells = {"#": (1, 0, 0), "_": (0, 0, 0), "O": (0, 1, 0), "X": (0, 0, 1), "√": (0, 1, 1)}
    grid = np.array([[cells[ch] for ch in row] for row in rows], dtype=bool)
    assert is_deadlocked(grid[..., 0], grid[..., 1], grid[..., 2], box) is expected


# --- views and APIs ---------------------------------------------------------------------------

def test_grid_text_entities_and_agent_agree():
    out = make(seed=3, size=8, num_boxes=2).text_reset(seed=3)
    rows = out.text.splitlines()[:-1]
    assert len(rows) == 8 and rows[out.agent[0]][out.agent[1]] in "PS"
    boxes = {e.cell for e in out.entities if e.kind == "box"}
    targets = {e.cell for e in out.entities if e.kind == "target"}
    assert len(boxes) == len(targets) == 2
    assert boxes == {(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in "X√"}
    assert targets == {(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in "O√S"}


def test_player_on_target_is_shown():
    env = make(size=6)
    env.load_level(["######", "#PO__#", "#__X_#", "#____#", "#____#", "######"])
    out = env.text_step("Right", strict=True)
    assert out.text.splitlines()[1] == "#_S__#"


def test_relative_text():
    env = make(size=6, num_boxes=2, text_mode="relative")
    env.load_level(["######", "#_O__#", "#_PX_#", "#_X__#", "#_O__#", "######"])
    assert env.text().splitlines() == [
        "Up: target", "Down: box (can be pushed)", "Left: floor", "Right: box (can be pushed)",
        "Boxes: 1 right; 1 down.", "Targets: 1 up; 2 down."]
    env.load_level(["######", "#_O__#", "#√PXX#", "#____#", "#____#", "######"])
    assert env.text().splitlines() == [
        "Up: target", "Down: floor", "Left: box on target (blocked)", "Right: box (blocked)",
        "Boxes: 1 left (on target); 1 right; 2 right.", "Targets: 1 up; 1 left."]


def test_invalid_text_strict_and_not():
    env = make(seed=1, invalid_penalty=-0.3)
    before = env.agent_cell()
    with pytest.raises(InvalidActionText, match="'push'"):
        env.text_step("push the box", strict=True)
    out = env.text_step("push the box")
    assert out.info["action_is_valid"] is False and out.reward == pytest.approx(-0.3)
    assert out.agent == before and out.step == 1


def test_timeout():
    env = make(size=6, max_steps=3)
    env.load_level(CORNER)
    out = env.text_step("Down, Up, Down", strict=True)
    assert out.truncated and not out.terminated and out.info["terminal_cause"] == "timeout"


@pytest.mark.filterwarnings("ignore:.*alternative render modes")
@pytest.mark.parametrize("config", [{}, {"size": 8, "num_boxes": 2, "image_size": 96}])
def test_gymnasium_env_checker(config):
    check_env(make(seed=0, **config), skip_render_check=False)


def test_frames():
    env = make(seed=2, size=8, num_boxes=3)
    frame = env.render()
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    plan = solve_env(env)
    after = env.text_step(plan[0], strict=True).images[0]
    assert not np.array_equal(frame, after)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), num_boxes=st.integers(1, 2),
       actions=st.lists(st.sampled_from(["Up", "Down", "Left", "Right"]), max_size=40))
def test_invariants_under_random_play(seed, num_boxes, actions):
    env = make(seed=seed, size=7, num_boxes=num_boxes, deadlock_ends_episode="false", max_steps=1000)
    walls, targets = env.walls.copy(), env.targets.copy()
    for action in actions:
        out = env.text_step(action, strict=True)
        assert env.boxes.sum() == num_boxes
        assert not (env.boxes & walls).any() and not walls[out.agent] and not env.boxes[out.agent]
        assert (env.walls == walls).all() and (env.targets == targets).all()
        assert out.info["boxes_on_target"] == int((env.boxes & targets).sum())
        if out.terminated:
            assert out.success
            break
