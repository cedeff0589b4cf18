"""Pixel-only play: text_mode=none (no map in the text), outcome_text, and cell_px (one VL token per cell)."""
from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from atlasrl.envserver import registry
from atlasrl.envserver.base import EnvConfigError
from atlasrl.envserver.envs.config import FrozenLakeConfig, SokobanConfig, parse_config
from atlasrl.envserver.envs.grid_actions import ACTIONS
from atlasrl.envserver.envs.grid_env import INVALID_OUTCOME, OVER_OUTCOME

LAKE = ["P___",
        "_O__",
        "____",
        "O__G"]
ROOM = ["######",
        "#P___#",
        "#_X__#",
        "#____#",
        "#__O_#",
        "######"]


def make(env_id, seed=0, **config):
    return registry.make(env_id, {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()},
                         seed=seed)


# --- text_mode=none -----------------------------------------------------------------------

@pytest.mark.parametrize("env_id", ["frozenlake", "sokoban"])
def test_text_mode_none_holds_no_state_the_frame_does(env_id):
    """Every level and every state reads the same: only the task line; the frames tell them apart."""
    texts, frames = set(), []
    for seed in range(6):
        env = make(env_id, seed, text_mode="none")
        out = env.text_reset(seed=seed)
        texts.add(out.text)
        frames.append(out.images[0])
        for action in ("Right", "Down", "Left, Up"):
            step = env.text_step(action)
            texts.add(step.text)
            frames.append(step.images[0])
    assert texts == {env.task} and env.task
    assert "\n" not in env.task and "Legend" not in env.task
    assert len({f.tobytes() for f in frames}) > 6             # the states differ, in the image alone
    spec = env.spec_info()
    assert spec.valid_actions == list(ACTIONS)                   # choice mode's candidates, as in every mode
    assert "image" in spec.instruction and spec.config["text_mode"] == "none"


def test_text_mode_none_instruction_does_not_use_map_characters():
    grid = make("frozenlake", text_mode="grid").spec_info().instruction
    none = make("frozenlake", text_mode="none").spec_info().instruction
    assert "(P)" in grid and "(P)" not in none and "(O)" not in none and "(G)" not in none
    assert "(X)" not in make("sokoban", text_mode="none").spec_info().instruction


def test_default_text_is_unchanged_without_outcome():
    env = make("frozenlake", 0)
    env.load_map(LAKE)
    out = env.text_step("Right", strict=True)
    assert out.text.splitlines()[0] == "_P__" and out.text.endswith(env.legend)
    assert make("frozenlake").spec_info().config["outcome_text"] == "false"


# --- outcome_text -------------------------------------------------------------------------

def test_frozenlake_outcomes_say_what_the_moves_did():
    env = make("frozenlake", text_mode="none", outcome_text=True)
    env.load_map(LAKE)
    assert env.text() == env.task                        # no outcome before the first turn
    assert env.text_step("Up").text == f"You bumped into the edge.\n{env.task}"
    assert env.text_step("Right, Right").text == f"You moved right. You moved right.\n{env.task}"
    assert env.text_step("jump").text == f"{INVALID_OUTCOME}\n{env.task}"
    assert env.text_step("Down, Left").text.startswith("You moved down. You moved left and fell into a hole.")
    out = env.text_step("Right")
    assert out.text.startswith(OVER_OUTCOME) and out.info["terminal_cause"] == "hole"
    env.load_map(LAKE)
    out = env.text_step("Right, Right, Right")
    out = env.text_step("Down, Down, Down")
    assert out.text.startswith("You moved down. You moved down. You moved down and reached the goal.") and out.success


def test_outcome_text_prefixes_the_other_text_modes():
    env = make("frozenlake", text_mode="relative", outcome_text=True)
    env.load_map(LAKE)
    lines = env.text_step("Right").text.splitlines()
    assert lines[0] == "You moved right." and lines[1].startswith("Goal:") and lines[-1] == "Right: frozen"


def test_slippery_outcome_reports_where_the_ice_took_the_agent():
    env = make("frozenlake", 5, slippery=True, outcome_text=True, hole_prob=0.0, max_steps=400)
    seen = set()
    for _ in range(120):
        if env.terminated or env.truncated:
            env.text_reset()
        out = env.text_step("Down")
        moved = out.info["moves"][0].lower()
        first = out.text.splitlines()[0]
        if moved == "down":
            assert first.startswith(("You moved down", "You bumped into the edge")), first
        else:
            assert first.startswith(f"You slipped {moved}"), first
        seen.add(moved)
    assert seen == {"down", "left", "right"}


def test_sokoban_outcomes_say_what_the_moves_did():
    env = make("sokoban", text_mode="none", outcome_text=True)
    env.load_level(ROOM)
    assert env.text_step("Up").text == f"You bumped into a wall.\n{env.task}"
    assert env.text_step("Right").text.startswith("You moved right.")
    assert env.text_step("Down, Down").text.startswith("You pushed a box down. You pushed a box down.")
    assert env.text_step("Down").text.startswith("You pushed a box down but it is blocked.")
    env.load_level(ROOM)
    out = env.text_step("Down")      # player (1,1) -> (2,1); then push the box right from (2,1)
    out = env.text_step("Right, Right")
    assert out.text.startswith("You pushed a box right. You pushed a box right.")
    out = env.text_step("Up, Right, Down")
    assert out.text.startswith("You moved up. You moved right. You pushed a box down.\n")   # (3,4): not stuck
    out = env.text_step("Down")                                                             # (4,4): a corner
    assert out.text.startswith("You pushed a box down. The box is stuck: it can never reach a target.")
    assert out.info["terminal_cause"] == "deadlock"
    env.load_level(ROOM)
    env.text_step("Right, Down, Down", strict=True)       # box (2,2) -> (4,2), player (3,2)
    env.text_step("Left, Down, Right", strict=True)       # push it right onto the target (4,3)
    assert env.success and env.text().startswith("You moved left. You moved down. You pushed a box right onto a "
                                                 "target. Every box is on a target.")


# --- cell_px ------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id, size, side", [("frozenlake", 4, 112), ("frozenlake", 8, 224), ("sokoban", 6, 168)])
def test_cell_px_makes_each_cell_exactly_one_28px_block(env_id, size, side):
    env = make(env_id, 0, size=size, cell_px=28)
    frame = env.render()
    assert frame.shape == (side, side, 3) == env.observation_space.shape
    assert env._renderer.tile == 28 and env._renderer._top == env._renderer._left == 0   # no padding
    codes = env.tile_codes()
    for r in range(size):
        for c in range(size):
            assert np.array_equal(frame[28 * r:28 * (r + 1), 28 * c:28 * (c + 1)], env._renderer.atlas[codes[r, c]])
    spec = env.spec_info()
    assert spec.image_shape == (side, side, 3) and spec.config["image_size"] == str(side)
    assert spec.config["cell_px"] == "28"


def test_cell_px_28_is_one_merged_qwen25_vl_token_per_cell():
    """The tiny VL model's image processor (its min/max pixels, atlasrl.models.tiny) keeps the 112 px frame as is
    and cuts it into 14-px patches merged 2x2: 16 merged tokens, whose 28-px squares are the 16 cells."""
    transformers = pytest.importorskip("transformers")
    from atlasrl.models.tiny import TinySpec

    processor = transformers.Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=TinySpec().max_pixels)  # as tiny.py
    env = make("frozenlake", 0, cell_px=28)
    frame = env.render()
    out = processor(images=[frame], return_tensors="np")
    t, h, w = (int(x) for x in out["image_grid_thw"][0])
    assert (t, h * 14, w * 14) == (1, *frame.shape[:2])                  # no resize: patches on the frame's pixels
    merge = processor.merge_size
    assert merge == 2 and (h // merge, w // merge) == (env.rows, env.cols)   # one merged token per cell


def test_default_image_size_is_unchanged():
    spec = make("frozenlake").spec_info()
    assert spec.image_shape == (128, 128, 3) and spec.config["cell_px"] == "none"


@pytest.mark.parametrize("config, match", [
    ({"cell_px": "3"}, r"'cell_px'='3'"),
    ({"cell_px": "wide"}, r"'cell_px'='wide'"),
    ({"cell_px": "28", "image_size": "128"}, r"image_size=128 contradicts cell_px=28 with size=4"),
    ({"cell_px": "28", "view": "egocentric", "view_radius": "1", "image_size": "112"},
     r"image_size=112 contradicts cell_px=28 with view=egocentric, view_radius=1 \(3 cells across\)"),
    ({"view_radius": "1"}, r"view_radius=1 needs view=egocentric"),
    ({"view": "sideways"}, r"'view'='sideways'"),
    ({"cell_px": "100", "size": "16"}, r"cell_px=100 with size=16 makes a 1600 px frame"),
    ({"position_marks": "maybe"}, r"'position_marks'='maybe'"),
])
def test_bad_cell_px_names_the_keys(config, match):
    with pytest.raises(EnvConfigError, match=match):
        registry.make("frozenlake", config)


@pytest.mark.parametrize("model, raw", [
    (FrozenLakeConfig, {"cell_px": "28", "text_mode": "none", "outcome_text": "true"}),
    (FrozenLakeConfig, {"image_size": "96"}),
    (SokobanConfig, {"cell_px": "28", "image_size": "168"}),           # both given, and they agree
    (FrozenLakeConfig, {"cell_px": "28", "view": "egocentric", "view_radius": "1"}),
    (SokobanConfig, {"view": "egocentric"}),
])
def test_resolved_config_strings_parse_back_to_the_same_config(model, raw):
    cfg = parse_config(model, raw)
    again = parse_config(model, cfg.as_strings())
    assert again.as_strings() == cfg.as_strings() and again.image_size == cfg.image_size


@pytest.mark.parametrize("env_id", ["frozenlake", "sokoban"])
def test_pixel_only_env_passes_gymnasium_checks(env_id):
    check_env(make(env_id, 0, text_mode="none", outcome_text=True, cell_px=28).unwrapped, skip_render_check=True)


# --- view=egocentric ----------------------------------------------------------------------

def _window_codes(env, radius):
    """What the egocentric frame must show: the tile codes around the agent, void beyond the map."""
    codes, (row, col) = env.tile_codes(), env.agent_cell()
    out = np.full((2 * radius + 1, 2 * radius + 1), env._void_code)
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            r, c = row + dr, col + dc
            if 0 <= r < env.rows and 0 <= c < env.cols:
                out[dr + radius, dc + radius] = codes[r, c]
    return out


@pytest.mark.parametrize("env_id, radius, cells", [("frozenlake", "1", 3), ("frozenlake", None, 7), ("sokoban", "2", 5)])
def test_egocentric_frame_is_the_window_around_the_agent(env_id, radius, cells):
    config = {"view": "egocentric", "cell_px": 12} | ({"view_radius": radius} if radius else {})
    env = make(env_id, 3, **config)
    assert env.observation_space.shape == (12 * cells, 12 * cells, 3) == env.spec_info().image_shape
    r = cells // 2
    seen_agent_cells = set()
    for action in ["Right", "Down", "Down", "Right", "Left", "Up", "Right", "Down", "Down"]:
        if env.terminated or env.truncated:
            env.text_reset()
        frame = env.text_step(action).images[0]
        want = _window_codes(env, r)
        assert want[r, r] == env.tile_codes()[env.agent_cell()]               # the agent is the centre cell
        for i in range(cells):
            for j in range(cells):
                assert np.array_equal(frame[12 * i:12 * (i + 1), 12 * j:12 * (j + 1)], env._renderer.atlas[want[i, j]])
        seen_agent_cells.add(env.agent_cell())
    assert len(seen_agent_cells) > 1


def test_egocentric_void_is_unlike_every_cell():
    env = make("frozenlake", 0, view="egocentric", view_radius=1, cell_px=28)
    atlas = env._renderer.atlas
    assert len(atlas) == len(env.sprites) + 1
    assert all(not np.array_equal(atlas[-1], tile) for tile in atlas[:-1])
    frame = env.render()                                  # the start, top-left: the row above and column left are void
    assert np.array_equal(frame[:28, :28], atlas[-1]) and np.array_equal(frame[28:56, :28], atlas[-1])


def test_egocentric_radius_1_is_one_merged_qwen25_vl_token_per_cell():
    transformers = pytest.importorskip("transformers")
    from atlasrl.models.tiny import TinySpec

    processor = transformers.Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=TinySpec().max_pixels)
    frame = make("frozenlake", 0, view="egocentric", view_radius=1, cell_px=28).render()
    out = processor(images=[frame], return_tensors="np")
    t, h, w = (int(x) for x in out["image_grid_thw"][0])
    assert frame.shape == (84, 84, 3) and (t, h * 14, w * 14) == (1, 84, 84) and (h // 2, w // 2) == (3, 3)


def test_egocentric_env_passes_gymnasium_checks():
    check_env(make("frozenlake", 0, text_mode="none", view="egocentric", view_radius=1, cell_px=28).unwrapped,
              skip_render_check=True)


# --- position_marks -----------------------------------------------------------------------

def test_position_marks_border_each_cell_in_a_colour_of_its_place_and_keep_the_inside():
    plain = make("frozenlake", 0, view="egocentric", view_radius=1, cell_px=28)
    marked = make("frozenlake", 0, view="egocentric", view_radius=1, cell_px=28, position_marks=True)
    a, b = plain.render(), marked.render()
    assert a.shape == b.shape == (84, 84, 3)
    borders = set()
    for i in range(3):
        for j in range(3):
            cell_a, cell_b = a[28 * i:28 * (i + 1), 28 * j:28 * (j + 1)], b[28 * i:28 * (i + 1), 28 * j:28 * (j + 1)]
            assert np.array_equal(cell_a[3:-3, 3:-3], cell_b[3:-3, 3:-3])           # what the cell holds is unchanged
            edge = np.concatenate([cell_b[:3].reshape(-1, 3), cell_b[-3:].reshape(-1, 3),
                                   cell_b[:, :3].reshape(-1, 3), cell_b[:, -3:].reshape(-1, 3)])
            assert (edge == edge[0]).all()                                            # one colour all round
            borders.add(tuple(edge[0]))
    assert len(borders) == 9                                                          # nine places, nine colours


def test_position_marks_follow_the_agent_and_stay_in_place():
    """The marks belong to the frame's cells, not the map's: after every step the border colours are the same,
    so the same neighbour (e.g. the cell below) always wears the same mark whatever the map holds there."""
    env = make("frozenlake", 3, view="egocentric", view_radius=1, cell_px=28, position_marks=True, text_mode="none")
    first = env.render()
    ring = np.ones((84, 84), bool)
    for k in range(3):
        ring[28 * k + 3:28 * (k + 1) - 3, :] &= False
    inner = np.zeros((84, 84), bool)
    for i in range(3):
        for j in range(3):
            inner[28 * i + 3:28 * (i + 1) - 3, 28 * j + 3:28 * (j + 1) - 3] = True
    for action in ["Right", "Down", "Down", "Right", "Left"]:
        if env.terminated or env.truncated:
            env.text_reset()
        frame = env.text_step(action).images[0]
        assert np.array_equal(frame[~inner], first[~inner])


def test_position_marks_make_the_same_content_at_two_places_two_different_vl_tokens():
    """Why the option exists: without marks a merged image token of Qwen2.5-VL is (nearly) the same vector wherever
    its cell sits, since the tower knows places only through rotary positions; with marks it is not."""
    pytest.importorskip("transformers")
    import torch

    from atlasrl.models.chat import encode_images
    from atlasrl.models.load import load_policy
    from atlasrl.models.tiny import tiny_model_path

    policy = load_policy(tiny_model_path("qwen2.5-vl", seed=0))
    cos = {}
    for marks in (False, True):
        env = make("frozenlake", 0, view="egocentric", view_radius=1, cell_px=28, position_marks=marks)
        env.load_map(["____", "_P__", "____", "___G"])          # ice all round the agent
        frame = env.render()
        pixels, grid = encode_images(policy.image_processor, [frame])
        with torch.no_grad():
            tokens = policy.model.model.visual(pixels, grid_thw=grid).pooler_output       # (9, hidden), row-major
        above, below = tokens[1], tokens[7]
        cos[marks] = float(torch.nn.functional.cosine_similarity(above, below, dim=0))
    assert cos[False] > 0.99 and cos[True] < 0.95, cos
