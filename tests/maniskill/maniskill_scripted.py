"""A scripted PickCube-v1 policy that writes VLA-0 integer chunks, and an engine that serves it to the actor.

    chunk = pickcube_chunk(obs_text, horizon=4)         # (4, 7) normalized pd_ee_delta_pose actions
    engine = ScriptedEngine(horizon=4)                  # the actor's Engine interface, text out
    "<think>grasp</think><answer>500 500 400 ... 0</answer>" = engine.generate([request], params)[0].text

The policy reads only the env's text observation (end effector, cube, goal, gripper,
"Holding cube"), so it is stateless and a batch of env sessions can share it:
above the cube -> down onto it -> close -> carry to the goal. Every step of a chunk
repeats a P-controller's command (half the remaining gap per step), and the
ensemble averages overlapping chunks. This is the policy under test, not a stand-in for the system:
its text goes through the actor's parsing, the env server's codec and ensemble, and
the simulator, which decides success.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from atlasrl.action_codec import ActionCodec
from atlasrl.actors.engines.base import Engine, Generation, GenerationRequest, SamplingParams

CODEC = ActionCodec([-1.0] * 7, [1.0] * 7, max_steps=32)   # pd_ee_delta_pose: normalized, 6 arm dims + gripper
_XYZ = r"\(([-\d.]+), ([-\d.]+), ([-\d.]+)\) m"
_STEP_M = 0.1                      # pd_ee_delta_pose moves at most 0.1 m per step at action 1.0
GAIN = 0.5                         # share of the remaining gap commanded per step: two steps per decision close it
# The chunk settings the chunk and numeric-action tests share: chunks of H = 4 steps, a decision every K = 2, so
# each step averages two overlapping chunks.
H, K = 4, 2
CHUNKED = {"image_size": "64", "action_chunk": str(H), "execute_steps": str(K)}


def _position(text: str, name: str) -> np.ndarray:
    m = re.search(rf"{name} at {_XYZ}", text)
    if m is None:
        raise ValueError(f"no position of {name!r} in the observation text: {text!r}")
    return np.array([float(v) for v in m.groups()])


def pickcube_chunk(text: str, horizon: int) -> np.ndarray:
    """(horizon, 7) actions from a PickCube-v1 text observation."""
    tcp, cube, goal = _position(text, "End effector"), _position(text, "cube"), _position(text, "goal_site")
    holding, closed = "Holding cube" in text, "Gripper: closed" in text
    grip = 1.0
    if holding:
        target, grip = goal + (tcp - cube), -1.0               # bring the cube (not the fingers) to the goal
    elif np.linalg.norm(cube - tcp) < 0.012:                  # at the cube: close (and keep closing)
        target, grip = tcp, -1.0
    elif closed:                                               # closed on nothing: open and back off upwards
        target = tcp + [0, 0, 0.04]
    elif np.linalg.norm((cube - tcp)[:2]) > 0.01:              # line up above the cube first
        target = cube + [0, 0, 0.06]
    else:
        target = cube
    chunk = np.zeros((horizon, 7))
    chunk[:, :3] = np.clip(GAIN * (target - tcp) / _STEP_M, -1, 1)
    chunk[:, 6] = grip
    return chunk


def pickcube_text(text: str, horizon: int) -> str:
    return CODEC.encode(pickcube_chunk(text, horizon))


def _last_user_text(messages: list[dict]) -> str:
    content = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


class ScriptedEngine(Engine):
    """The actor's engine interface around pickcube_chunk: free-mode text, one byte per token (nothing trains on it)."""

    tokenizer = None

    def __init__(self, horizon: int, garbled_calls: int = 0):
        self.horizon = horizon
        self.garbled_calls = garbled_calls        # the first N batches get text without the <answer> format
        self.frames: list[tuple[int, ...]] = []   # shapes of the frames the prompts carried

    @property
    def version(self) -> int:
        return 0

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Generation]:
        outs = []
        for req in requests:
            self.frames += [tuple(np.asarray(img).shape) for img in req.images]
            text = f"<think>pick</think><answer>{pickcube_text(_last_user_text(req.messages), self.horizon)}</answer>"
            if self.garbled_calls > 0:
                text = "Action: move towards the cube"
            ids = list(text.encode())
            outs.append(Generation(prompt_ids=[], token_ids=ids, logprobs=[0.0] * len(ids), text=text,
                                   finish_reason="stop", version=0, temperature=params.temperature))
        self.garbled_calls -= 1
        return outs

    def update_weights(self, version: int, named_tensors: Iterable[tuple[str, object]]) -> None:
        raise NotImplementedError("a scripted policy has no weights")
