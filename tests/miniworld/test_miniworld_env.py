"""MiniWorld envs in process: spec, real frames, determinism, top-view geometry and every action word.

Pixels are rendered by Mesa (llvmpipe) here and by other drivers elsewhere: tests compare frames with each
other (same seed -> same frame on one machine), never with stored pixels.
"""
import math

import numpy as np
import pytest
from miniworld_scripted import toward

from atlasrl.envserver import registry
from atlasrl.envserver.base import EnvConfigError, InvalidActionText
from atlasrl.envserver.miniworld import actions, gl
from atlasrl.envserver.miniworld.env import compass

pytestmark = pytest.mark.usefixtures("miniworld_ready")


@pytest.fixture(scope="module")
def hallway(miniworld_ready):
    env = registry.make("miniworld:Hallway", {"top_view": "true", "top_view_size": "96"}, seed=0)
    yield env
    env.close()


def test_spec_names_actions_cameras_and_grid(hallway):
    spec = hallway.spec_info()
    assert spec.env_id == "miniworld:Hallway" and spec.image_shape == (64, 64, 3)
    assert spec.valid_actions == ["turn left", "turn right", "move forward"] and spec.action_kind == "discrete"
    assert spec.camera_names == ["first_person", "top_down"] and spec.max_steps == 250
    assert (spec.grid_rows, spec.grid_cols) == (4, 12)           # the 12 m x 4 m hallway in 1 m cells
    assert "red box" in spec.instruction and spec.config["top_view"] == "true"


def test_frames_are_real_and_change_with_the_view(hallway):
    out = hallway.text_reset(seed=1)
    first, top = out.images
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8 and top.shape == (96, 96, 3)
    assert first.std() > 1 and len(np.unique(first.reshape(-1, 3), axis=0)) > 20   # may face a plain wall
    turned = hallway.text_step("turn left, turn left, turn left").images[0]
    assert np.abs(turned.astype(int) - first.astype(int)).mean() > 2, "turning should change the view"
    assert out.text.startswith("Task: Go to the red box") and out.step == 0 and out.layout_key


def test_same_seed_same_episode_other_seeds_other_layouts(miniworld_ready):
    a = registry.make("miniworld:OneRoomS6", {}, seed=5)
    b = registry.make("miniworld:OneRoomS6", {}, seed=5)
    try:
        oa, ob = a.text_reset(), b.text_reset()
        assert oa.layout_key == ob.layout_key and np.array_equal(oa.images[0], ob.images[0])
        for _ in range(3):
            oa, ob = a.text_step("move forward, turn right"), b.text_step("move forward, turn right")
        assert np.array_equal(oa.images[0], ob.images[0]) and oa.info["position"] == ob.info["position"]
        keys = {a.text_reset(seed=s).layout_key for s in range(5)}
        assert len(keys) == 5
        assert a.text_reset(seed=5).layout_key == ob.layout_key       # the seed, not the history, decides
    finally:
        a.close()
        b.close()


def _red_centroid(img: np.ndarray, mask_out: np.ndarray | None = None) -> tuple[float, float]:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    red = (r > 150) & (g < 80) & (b < 80)
    if mask_out is not None:
        red &= ~mask_out
    assert red.sum() > 3, "no red box in the top view"
    rows, cols = np.nonzero(red)
    return rows.mean(), cols.mean()


@pytest.mark.parametrize("name", ["OneRoomS6", "Hallway"])
def test_goal_position_and_cell_match_the_top_view(miniworld_ready, name):
    env = registry.make(f"miniworld:{name}", {"top_view_size": "128", "cell_size": "0.5"}, seed=2)
    try:
        out = env.text_reset()
        [goal] = [e for e in out.entities if e.kind == "goal"]
        row, col = _red_centroid(env.top_view(128, agent=False))   # the agent is drawn red too
        x0, x1, z0, z1 = env.top_view_extent()
        x, z = goal.position
        assert abs(col - (x - x0) / (x1 - x0) * 128) < 4 and abs(row - (z - z0) / (z1 - z0) * 128) < 4
        assert goal.cell == env.grid.cell_of(x, z)
        assert goal.cell == (math.floor((z - env.grid.z0) / 0.5), math.floor((x - env.grid.x0) / 0.5))
        px, pz = out.info["position"]
        assert out.agent == env.grid.cell_of(px, pz)
    finally:
        env.close()


def test_turns_and_moves_follow_the_heading(hallway):
    out = hallway.text_reset(seed=3)
    h0, (x0, z0) = out.info["heading_deg"], out.info["position"]
    left = hallway.text_step("turn left").info["heading_deg"]
    assert (left - h0) % 360 == pytest.approx(15, abs=0.01)
    right = hallway.text_step("turn right, turn right").info["heading_deg"]
    assert (h0 - right) % 360 == pytest.approx(15, abs=0.01)
    moved = hallway.text_step("move forward")
    x1, z1 = moved.info["position"]
    rad = math.radians(right)
    assert (x1 - x0, z1 - z0) == pytest.approx((0.15 * math.cos(rad), -0.15 * math.sin(rad)), abs=1e-3)
    assert moved.text.endswith("You moved forward.") and moved.info["actions_executed"] == 1


def test_every_action_word_of_a_full_action_env(miniworld_ready):
    env = registry.make("miniworld:PutNext", {"max_actions_per_turn": "8"}, seed=0)
    try:
        assert env.spec_info().valid_actions == list(actions.WORDS)
        out = env.text_reset()
        assert env.text_step("move forward, move back").info["actions"] == ["move forward", "move back"]
        u = env._env
        box = next(e for e in u.entities if not e.is_static)

        def face_it():  # stand in front of an object, facing it
            u.agent.dir = 0.0
            u.agent.pos = box.pos - np.array([u.agent.radius + box.radius + 0.05, 0, 0])

        gl.call(face_it)
        picked = env.text_step("pick up")
        assert "picked something up" in picked.text and u.agent.carrying is box
        dropped = env.text_step("drop, toggle, done")
        assert dropped.info["actions"] == ["drop", "toggle", "done"] and u.agent.carrying is None
        assert "You dropped." in dropped.text
        assert out.step == 0 and dropped.step == 6
    finally:
        env.close()


def test_action_text_parsing():
    assert actions.parse("Turn_Left, forward; move-forward\nright", 3, 8) == [0, 2, 2, 1]
    assert actions.parse("turn left move forward", 3, 4) == [0, 2]
    with pytest.raises(actions.ActionParseError, match="'Jump'"):
        actions.parse("Jump around", 3, 4)
    with pytest.raises(actions.ActionParseError, match="does not exist in this env"):
        actions.parse("pick up", 3, 4)
    with pytest.raises(actions.ActionParseError, match="at most 2"):
        actions.parse("left, left, left", 3, 2)
    assert compass(0) == "east" and compass(90) == "north" and compass(200) == "west" and compass(-45) == "south-east"


def test_invalid_text_is_a_penalised_step_and_strict_raises(hallway):
    hallway.text_reset(seed=4)
    out = hallway.text_step("fly up")
    assert out.info["action_is_valid"] is False and "fly" in out.info["invalid_reason"]
    assert out.reward == pytest.approx(-0.1) and out.step == 1 and "not a valid action" in out.text
    with pytest.raises(InvalidActionText):
        hallway.text_step("fly up", strict=True)


def test_scripted_policy_reaches_the_goal_in_process(hallway):
    out = hallway.text_reset(seed=6)
    [goal] = [e.position for e in out.entities if e.kind == "goal"]
    while not (out.terminated or out.truncated):
        out = hallway.text_step(toward(out.info["position"], out.info["heading_deg"], goal))
    assert out.success and out.info["terminal_cause"] == "success" and out.reward == 1.0
    assert "You reached the goal." in out.text
    after = hallway.text_step("move forward")
    assert after.info["action_is_valid"] is False and after.reward == 0.0 and after.step == out.step


@pytest.mark.parametrize(("config", "cause"), [({"max_collisions": "3"}, "collisions"), ({"stall_steps": "6"}, "stalled"),
                                               ({"max_steps": "5"}, "timeout")])
def test_env_specific_terminal_causes(miniworld_ready, config, cause):
    env = registry.make("miniworld:OneRoomS6", config, seed=0)
    try:
        out = env.text_reset()
        for _ in range(200):
            if out.terminated or out.truncated:
                break
            out = env.text_step("turn left" if cause == "stalled" else "move forward")
        assert out.info["terminal_cause"] == cause and not out.success
        assert out.truncated == (cause == "timeout") and out.terminated == (cause != "timeout")
    finally:
        env.close()


@pytest.mark.parametrize(("env_id", "config", "err", "needle"), [
    ("miniworld:Hallway", {"image_size": "4096"}, EnvConfigError, "image_size"),
    ("miniworld:Hallway", {"colour": "red"}, EnvConfigError, "colour"),
    ("miniworld:Hallway", {"text_mode": "map"}, EnvConfigError, "text_mode"),
    ("miniworld:Atlantis", {}, registry.UnknownEnv, "Atlantis"),
])
def test_bad_config_names_the_key(env_id, config, err, needle):
    with pytest.raises(err, match=needle):
        registry.make(env_id, config)


def test_listed_in_the_registry(miniworld_ready):
    ids = registry.list_ids()
    assert "miniworld:Hallway" in ids and "miniworld:Maze" in ids and "miniworld" in registry.prefixes()
    env = registry.make("miniworld:MiniWorld-OneRoomS6Fast-v0", {})
    assert env.spec_info().env_id == "miniworld:OneRoomS6Fast" and env.spec_info().max_steps == 50
    env.close()


def test_every_listed_env_opens_renders_and_steps(miniworld_ready):
    from atlasrl.envserver.miniworld.tasks import NAMES

    for name in NAMES:
        env = registry.make(f"miniworld:{name}", {"image_size": "32", "top_view": "true", "top_view_size": "32"}, seed=0)
        try:
            spec = env.spec_info()
            out = env.text_reset()
            assert 0 < spec.max_steps <= 2000 and spec.grid_rows * spec.grid_cols > 1, name
            assert out.images[0].std() > 0 and out.images[1].std() > 0 and out.entities, name
            step = env.text_step("move forward, turn left")
            assert step.info["action_is_valid"] and step.step >= 1 and step.layout_key == out.layout_key, name
        finally:
            env.close()
