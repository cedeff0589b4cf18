"""A ManiSkill 3 task as an atlasrl TextEnv: rendered cameras in, integer action text out.

    env = registry.make("maniskill:PickCube-v1", {"image_size": "128"}, seed=0)
    out = env.text_reset()                          # images, text, ee/object entities, layout_key
    out = env.text_step("500 500 400 500 500 500 0")  # codec text (spec_info().action_format)
    out = env.numeric_step(chunk)                   # or (n <= action_chunk, D) controller units (Action.values)

One simulated env per instance (num_envs=1, CPU physics); rendering goes to the
render device of this process (SAPIEN's GPU renderer when CUDA is visible, else
a software Vulkan device such as Mesa lavapipe).

Action chunks are decoded and smoothed here, on the env server, not in the actor:
one action text (a decision) steps physics through up to ``execute_steps`` primitive
steps with no round trip per step, each step's action being VLA-0's temporal
ensemble of the chunks that predict it (atlasrl.action_codec.TemporalEnsemble, one
per session, reset with the episode). The codec needs the controller's bounds and
the ensemble the step clock, both of which the env owns; the actor stays
env-agnostic and sends the model's <answer> text. With ``render=decision`` (the
default) only the frame after a decision's last step is rendered: the steps in
between run physics and the task's reward/success only (``_physics_step``), since
rendering is most of a step's cost on a software Vulkan device.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import gymnasium as gym
import numpy as np

from atlasrl.action_codec import ActionCodec, TemporalEnsemble
from atlasrl.envserver.base import Entity, EnvConfigError, EnvSpecInfo, InvalidActionText, StepOutput, TextEnv
from atlasrl.envserver.maniskill import scene, tasks
from atlasrl.envserver.maniskill.config import ManiSkillConfig
from atlasrl.envserver.maniskill.probe import require_renderer

REWARD_MODES = {"dense": "normalized_dense", "sparse": "sparse"}
DEFAULT_MAX_STEPS = 200
# SAPIEN shares one renderer per process; envs stepped from several server threads
# take turns (lavapipe already uses every core for one frame, so nothing is lost).
_SIM_LOCK = threading.RLock()


def _locked(method):
    def wrapper(self, *args, **kwargs):
        with _SIM_LOCK:
            return method(self, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


class ManiSkillEnv(TextEnv):
    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium.Env.metadata, a class attribute by its convention

    @_locked
    def __init__(self, task: str, config: ManiSkillConfig | None = None, seed: int | None = None):
        self.task, self.config = task, config or ManiSkillConfig()
        self.env_id = f"maniskill:{task}"
        require_renderer()
        tasks.check_task(task)
        self._env = self._create()
        self._task_env = self._env.unwrapped
        self.action_space = self._task_env.single_action_space
        if not isinstance(self.action_space, gym.spaces.Box):
            self.close()
            raise EnvConfigError(f"ManiSkill task '{task}' has a {type(self.action_space).__name__} action space "
                                 f"(several robots); only single-robot tasks with a Box action space are supported")
        self._bounds = ([float(x) for x in self.action_space.low], [float(x) for x in self.action_space.high])
        controller = self._task_env.agent.controller
        size = self.config.image_size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.codec = ActionCodec.from_space(self.action_space, max_steps=self.config.action_chunk)
        self.ensemble = TemporalEnsemble(self.config.action_chunk, self.codec.dim, self.config.ensemble_decay)
        self._action_names = scene.action_names(controller)
        self._delta = scene.delta_mask(controller)
        self._workspace = scene.Workspace(self.config.workspace, self.config.grid_size, self.config.grid_size)
        self._layout = scene.Workspace(self.config.workspace, self.config.layout_grid, self.config.layout_grid)
        self._next_seed = seed
        self._steps = 0
        self._last_command = np.zeros(self.action_space.shape, np.float32)
        self._layout_key = ""
        self._camera_names: list[str] = []
        self._last: StepOutput | None = None

    def _create(self):
        from mani_skill.utils.registration import REGISTERED_ENVS

        cfg = self.config
        self.max_steps = cfg.max_steps or REGISTERED_ENVS[self.task].max_episode_steps or DEFAULT_MAX_STEPS
        backend = cfg.render_backend
        if backend == "auto":
            import torch

            backend = "gpu" if torch.cuda.is_available() else "cpu"
        kwargs = dict(
            obs_mode="rgb", control_mode=cfg.control_mode, reward_mode=REWARD_MODES[cfg.reward_mode],
            sensor_configs=dict(width=cfg.image_size, height=cfg.image_size), num_envs=1,
            sim_backend="physx_cpu", render_backend=backend, max_episode_steps=self.max_steps,
        )
        with tasks.no_download_prompt(self.task):
            try:
                return gym.make(self.task, **kwargs)
            except tasks.MissingAssets:
                raise
            except Exception as e:  # bad control_mode etc. surface as assertion/key errors deep inside
                hint = " (this task has no dense reward: use reward_mode=sparse)" if "reward mode" in str(e) else ""
                raise EnvConfigError(
                    f"ManiSkill task '{self.task}' could not be created (control_mode={cfg.control_mode}, "
                    f"reward_mode={cfg.reward_mode}): {type(e).__name__}: {e}{hint}"
                ) from e

    # -- TextEnv ------------------------------------------------------------------------------
    def spec_info(self) -> EnvSpecInfo:
        size = self.config.image_size
        return EnvSpecInfo(
            env_id=self.env_id, family=self.env_id, image_shape=(size, size, 3), valid_actions=[],
            max_steps=self.max_steps, grid_rows=self.config.grid_size, grid_cols=self.config.grid_size,
            max_actions_per_turn=self.config.action_chunk, action_kind="continuous",
            action_format=self.codec.describe(self._action_names), instruction=tasks.instruction(self.task),
            config=self.config.as_strings(), action_dim=self.codec.dim,
            camera_names=self._camera_names or self._sensor_names(),
            numeric_actions=True, action_low=self._bounds[0], action_high=self._bounds[1],
            clip_actions=self.config.clip_actions,
        )

    @_locked
    def text_reset(self, seed: int | None = None) -> StepOutput:
        seed = seed if seed is not None else self._next_seed
        self._next_seed = None
        obs, info = self._env.reset(seed=seed)
        self._steps = 0
        self.ensemble.reset()
        self._last_command = scene.initial_hold(self._task_env.agent.controller)
        cells = [f"{b.name}:{r},{c}" for b in scene.bodies(self._task_env) for r, c in [self._layout.cell(b.position)]]
        self._layout_key = f"{self.task}|" + ";".join(cells)
        self._last = self._output(obs, 0.0, False, False, info, {"action_is_valid": True})
        return self._last

    @_locked
    def text_step(self, text: str, strict: bool = False) -> StepOutput:
        """One decision: decode the chunk, then step through ``execute_steps`` ensembled actions (module doc).

        Invalid text: the robot holds for one step (the codec's hold action: zero for delta dimensions, the last
        command for absolute ones), the turn gets ``invalid_action_penalty`` and ``info.action_is_valid=False``
        (the actor counts it); the ensemble's clock advances with the held step, so earlier chunks stay aligned.
        """
        ended = self._ended()
        if ended is not None:
            return ended
        hold = np.where(self._delta, 0.0, self._last_command).astype(np.float32)
        decoded = self.codec.decode(text, hold=hold)
        if not decoded.valid and strict:
            raise InvalidActionText(decoded.reason)
        extra: dict[str, Any] = {"action_is_valid": decoded.valid}
        if not decoded.valid:
            extra["invalid_reason"] = decoded.reason
            self.ensemble.skip()
            out = self._apply(iter([decoded.actions[0]]), extra)
            out.reward += self.config.invalid_action_penalty
            return out
        return self._decide(decoded.actions, extra)

    @_locked
    def numeric_step(self, actions: np.ndarray) -> StepOutput:
        """One decision from numbers (an action-head policy): the (n, D) chunk in controller units, already
        checked (and clipped, with clip_actions) against the spec by atlasrl/envserver/numeric.py, goes through
        the same temporal ensemble and ``execute_steps`` as a decoded text chunk."""
        ended = self._ended()
        if ended is not None:
            return ended
        return self._decide(np.asarray(actions, np.float32).reshape(-1, self.codec.dim), {"action_is_valid": True})

    def _ended(self) -> StepOutput | None:
        """A step after the episode ended (same rule as the grid games): a no-op answer, else None."""
        last = self._last
        if last is None or not (last.terminated or last.truncated):
            return None
        info = {**last.info, "action_is_valid": False, "invalid_reason": "the episode has ended; reset the env"}
        self._last = dataclasses.replace(last, reward=0.0, info=info)
        return self._last

    def _decide(self, chunk: np.ndarray, extra: dict[str, Any]) -> StepOutput:
        """One decision's chunk (n, D) in controller units: into the ensemble, then its ``execute_steps``."""
        self.ensemble.add(chunk)
        extra["chunk_steps"] = len(chunk)
        return self._apply(self._ensembled(self.config.execute_steps or len(chunk)), extra)

    def _ensembled(self, k: int):
        """Up to k smoothed actions; fewer when no chunk predicts that far (a short chunk)."""
        for _ in range(k):
            action = self.ensemble.next()
            if action is None:
                return
            yield action

    # -- Gymnasium ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        out = self.text_reset(seed)
        return out.images[0], out.info

    @_locked
    def step(self, action):
        out = self._apply(iter(np.asarray(action, np.float32).reshape(1, -1)), {"action_is_valid": True})
        return out.images[0], out.reward, out.terminated, out.truncated, out.info

    def render(self):
        return None if self._last is None else self._last.images[0]

    @_locked
    def close(self) -> None:
        if getattr(self, "_env", None) is not None:
            self._env.close()
            self._env = None

    # -- internals ----------------------------------------------------------------------------
    def _apply(self, actions, extra: dict[str, Any]) -> StepOutput:
        """Step through ``actions`` (an iterator of (D,) arrays), stopping when the episode ends; observe once."""
        if self._last is None:
            raise RuntimeError("step before reset")
        every_step = self.config.render == "every_step"
        reward, terminated, truncated = 0.0, False, False
        obs = info = None
        applied = 0
        t0 = time.perf_counter()
        for action in actions:
            if every_step:   # the gym loop: renders the cameras after every step
                obs, r, term, _, info = self._env.step(action[None])
            else:
                r, term, info = self._physics_step(action)
            self._steps += 1
            applied += 1
            self._last_command = action
            reward += float(_scalar(r))
            terminated = bool(_scalar(term))
            truncated = self._steps >= self.max_steps
            if terminated or truncated:
                break
        t1 = time.perf_counter()
        if obs is None:   # render only the frame the model sees next
            obs = self._task_env.get_obs(info)
        # Where a decision's time goes (bench/maniskill_actor.py): physics (with every frame under every_step), the
        # decision's frame; the observation's assembly and the RPC are the rest of the step's round trip.
        extra["sim_s"], extra["render_s"] = round(t1 - t0, 6), round(time.perf_counter() - t1, 6)
        extra["steps_applied"] = applied  # a chunk stops early when the episode ends
        self._last = self._output(obs, reward, terminated, truncated, info, extra)
        return self._last

    def _physics_step(self, action: np.ndarray):
        """mani_skill's BaseEnv.step (3.0.x) without get_obs, i.e. without rendering the cameras: the controller
        acts, physics steps, the task evaluates success/fail and its reward. No task computes its reward from the
        observation, so ``obs=None``; test_render_at_decision_matches_render_every_step checks the equivalence."""
        te = self._task_env
        applied = te._step_action(action[None])
        te._elapsed_steps += 1
        info = te.get_info()
        reward = te.get_reward(obs=None, action=applied, info=info)
        terminated = any(bool(_scalar(info[k])) for k in ("success", "fail") if k in info)
        return reward, terminated, info

    def _sensor_names(self) -> list[str]:
        return list(self._task_env._sensors) if hasattr(self._task_env, "_sensors") else ["base_camera"]

    def _output(self, obs, reward, terminated, truncated, info, extra) -> StepOutput:
        sensors = obs["sensor_data"]
        self._camera_names = list(sensors)
        images = [np.ascontiguousarray(scene._np(sensors[name]["rgb"])[0, ..., :3], dtype=np.uint8) for name in sensors]
        ee = scene.ee_position(self._task_env)
        objects = scene.bodies(self._task_env)
        entities = []
        if ee is not None:
            entities.append(Entity("ee", self._workspace.cell(ee), ee, "tcp"))
        entities += [Entity(b.kind, self._workspace.cell(b.position), b.position, b.name) for b in objects]
        info_out = {k: _jsonable(v) for k, v in info.items() if k not in ("reconfigure",)}
        info_out.update(extra)
        success = bool(info_out.get("success", False))
        return StepOutput(
            images=images, text=self._text(ee, objects, info), reward=reward, terminated=terminated, truncated=truncated,
            success=success, info=info_out, agent=entities[0].cell if ee is not None else None,
            entities=entities, step=self._steps, layout_key=self._layout_key,
        )

    def _text(self, ee, objects: list[scene.Body], info) -> str:
        lines = [f"Task: {tasks.instruction(self.task)}"]
        robot = f"Gripper: {scene.gripper_state(self._task_env)}."
        if ee is not None:
            robot += f" End effector at {_xyz(ee)}, cell {self._workspace.cell(ee)}."
        held = scene.grasped(self._task_env, objects, info)
        if held:
            robot += f" Holding {held}."
        lines.append(robot)
        lines += [f"{b.name} at {_xyz(b.position)}, cell {self._workspace.cell(b.position)}." for b in objects]
        return "\n".join(lines)


def _scalar(x):
    a = scene._np(x)
    return a.reshape(-1)[0] if a.size else 0


def _jsonable(v):
    a = scene._np(v)
    if a.size == 1:
        item = a.reshape(-1)[0].item()
        return item if isinstance(item, (bool, int, float, str)) else str(item)
    return a.tolist()


def _xyz(p) -> str:
    return "(" + ", ".join(f"{float(v):.3f}" for v in p) + ") m"
