"""ManiSkill envs through a real env server over loopback gRPC.

Env creation costs seconds (shader compile), so the module shares one server and
keeps the env count small. Images are checked by shape, dtype and loose
statistics only: pixels differ across Mesa versions.
"""
import asyncio

import grpc
import numpy as np
import pytest
import pytest_asyncio

from atlasrl.action_codec import ActionCodec
from atlasrl.clients.env import EnvClient
from atlasrl.rpc import RemoteError
from atlasrl.v1 import env_pb2

pytestmark = [pytest.mark.maniskill, pytest.mark.asyncio(loop_scope="module")]

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
CODEC = ActionCodec([-1.0] * 7, [1.0] * 7)  # pd_ee_delta_pose: normalized, 6 arm dims + gripper


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pick(maniskill_server):
    """One PickCube-v1 env at the default 128x128, shared by the tests below."""
    async with EnvClient(maniskill_server.address) as client:
        handle, spec = await client.open("maniskill:PickCube-v1", seed=0)
        yield client, handle, spec


def positions(obs) -> dict[str, np.ndarray]:
    return {e.name: np.array(e.position) for e in obs.entities}


def assert_real_frame(img: np.ndarray, size: int) -> None:
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert img.std() > 5 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # a scene, not a blank frame


async def test_spec_describes_continuous_text_actions(pick):
    _, _, spec = pick
    assert spec.env_id == "maniskill:PickCube-v1" and spec.family == "maniskill:PickCube-v1"
    assert spec.action_kind == env_pb2.ACTION_KIND_CONTINUOUS and spec.action_dim == 7
    assert list(spec.image_shape) == [128, 128, 3] and list(spec.camera_names) == ["base_camera"]
    assert "7 space-separated integers in 0..1000" in spec.action_format and "gripper" in spec.action_format
    assert spec.grid_rows == spec.grid_cols == 10 and spec.max_steps == 50
    assert spec.config["control_mode"] == "pd_ee_delta_pose" and "cube" in spec.instruction


async def test_reset_and_step_carry_images_text_and_coordinates(pick):
    client, handle, _ = pick
    obs = await client.reset(handle, seed=1)
    assert_real_frame(obs.images[0], 128)
    assert obs.text.startswith("Task: Pick up the red cube") and "Gripper: open" in obs.text
    pos = positions(obs)
    assert set(pos) >= {"tcp", "cube", "goal_site"} and all(p.shape == (3,) for p in pos.values())
    kinds = {e.name: e.kind for e in obs.entities}
    assert kinds["tcp"] == "ee" and kinds["cube"] == "object" and kinds["goal_site"] == "goal"
    ee = next(e for e in obs.entities if e.kind == "ee")
    assert obs.agent == (ee.cell.row, ee.cell.col) and all(0 <= c < 10 for c in obs.agent)
    assert obs.layout_key.startswith("PickCube-v1|cube:") and obs.step == 0

    down = np.array([0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0])
    moved = await client.step_one(handle, CODEC.encode(down))
    assert moved.info["action_is_valid"] is True and moved.step == 1
    assert positions(moved)["tcp"][2] < pos["tcp"][2] - 0.005          # the end effector went down
    assert 0.0 <= moved.reward <= 1.0                                   # normalized dense reward
    assert moved.layout_key == obs.layout_key and not np.array_equal(moved.images[0], obs.images[0])


async def test_malformed_action_text_is_a_penalised_hold(pick):
    client, handle, _ = pick
    before = await client.reset(handle, seed=2)
    bad = await client.step_one(handle, "move the gripper down please")
    assert bad.info["action_is_valid"] is False and "no integers found" in bad.info["invalid_reason"]
    assert bad.step == 1 and bad.reward < 0.1                           # -0.1 penalty on top of the dense reward
    assert np.allclose(positions(bad)["tcp"], positions(before)["tcp"], atol=0.01)  # held still
    strict = (await client.step({handle: "500 500"}, strict=True))[0]
    assert strict.error is not None and strict.error.code == INVALID_ARGUMENT
    assert "got 2 integers; expected 7" in str(strict.error)


async def test_scripted_policy_reaches_success(pick):
    """Grasp the cube and carry it to the goal with a P-controller on the reported positions."""
    client, handle, _ = pick
    obs = await client.reset(handle, seed=1)
    phase, closing = 0, 0
    for _ in range(50):
        p = positions(obs)
        tcp, cube, goal = p["tcp"], p["cube"], p["goal_site"]
        target, grip = [(cube + [0, 0, 0.06], 1.0), (cube, 1.0), (tcp, -1.0), (goal, -1.0)][phase]
        if phase < 2 and np.linalg.norm(target - tcp) < 0.01:
            phase += 1
        elif phase == 2:
            closing += 1
            phase = 3 if closing >= 5 else 2
        action = np.zeros(7)
        action[:3] = np.clip((target - tcp) / 0.1, -1, 1)
        action[6] = grip
        obs = await client.step_one(handle, CODEC.encode(action))
        if obs.done:
            break
    assert obs.success and obs.terminated and obs.info["success"] is True
    assert "Holding cube" in obs.text and obs.reward == pytest.approx(1.0)
    after = (await client.step({handle: CODEC.encode(np.zeros(7))}))[0]     # the server wants a reset now
    assert after.error is not None and after.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]


@pytest.mark.parametrize("env_id, config, reason", [
    ("maniskill:PickSingleYCB-v1", {}, "needs assets that are not installed (ycb"),
    ("maniskill:NoSuchTask-v1", {}, "unknown ManiSkill task 'NoSuchTask-v1'"),
    ("maniskill:PickCube-v1", {"image_size": "8"}, "maniskill config 'image_size'"),
    ("maniskill:PickCube-v1", {"control_mode": "warp_drive"}, "could not be created (control_mode=warp_drive, reward_mode=dense)"),
])
async def test_bad_opens_fail_fast_with_a_clear_error(maniskill_server, env_id, config, reason):
    async with EnvClient(maniskill_server.address) as client:
        with pytest.raises(RemoteError) as e:
            await asyncio.wait_for(client.open(env_id, config), timeout=120)  # never an input() prompt
        assert e.value.code == INVALID_ARGUMENT and reason in str(e.value)
        if "PickCube" not in env_id:
            assert "tasks that can run here: maniskill:PickCube-v1" in str(e.value)
        assert await client.close([]) == 0                                # the stream still serves


async def test_four_concurrent_envs_of_the_listed_tasks(maniskill_server):
    """Four clients at once, one env each, on the other required tasks."""
    tasks = {"PushCube-v1": 7, "StackCube-v1": 7, "PegInsertionSide-v1": 7, "PushT-v1": 6}

    async def run(task: str, dim: int):
        async with EnvClient(maniskill_server.address) as client:
            config = {"image_size": "64", "reward_mode": "sparse", "action_chunk": "2"}
            handle, spec = await client.open(f"maniskill:{task}", config, seed=3)
            assert spec.action_dim == dim and spec.image_shape[:2] == [64, 64] and spec.max_actions_per_turn == 2
            first = await client.reset(handle)
            codec = ActionCodec([-1.0] * dim, [1.0] * dim, max_steps=2)
            rng = np.random.default_rng(0)
            for steps in (2, 1, 1):                                   # a 2-step chunk, then single steps
                obs = await client.step_one(handle, codec.sample_text(rng, steps=steps))
                assert obs.info["action_is_valid"] is True and obs.info["steps_applied"] == steps
                assert obs.reward in (0.0, 1.0)                       # sparse reward, summed over the turn
            return spec, first, obs

    results = await asyncio.gather(*(run(t, d) for t, d in tasks.items()))
    for (task, _), (spec, first, last) in zip(tasks.items(), results):
        assert len(first.images) == len(spec.camera_names) >= 1
        for img in first.images:
            assert_real_frame(img, 64)
        assert first.layout_key.startswith(task) and last.step == 4
        assert any(e.kind == "ee" for e in last.entities) and any(e.kind == "object" for e in last.entities)
    assert len(results[1][0].camera_names) == 2                          # StackCube adds the hand camera
