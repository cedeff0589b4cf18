"""Facts read from a live ManiSkill env (``env.unwrapped``), in numpy, world frame.

Only this module and env.py touch mani_skill objects; everything here works on
any single-env (num_envs=1) ManiSkill 3 task: objects are found as the task's
``Actor`` attributes rather than from a per-task table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Body:
    name: str                      # attribute name on the task, e.g. "cube", "goal_site"
    kind: str                      # "goal" for goal markers, else "object"
    position: tuple[float, float, float]


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def bodies(task_env) -> list[Body]:
    """The task's actors (objects and goal markers) with their positions."""
    from mani_skill.utils.structs import Actor

    out = []
    for name, value in vars(task_env).items():
        if isinstance(value, Actor) and not name.startswith("_"):
            p = _np(value.pose.p)[0]
            kind = "goal" if ("goal" in name or "target" in name) else "object"
            out.append(Body(name, kind, (float(p[0]), float(p[1]), float(p[2]))))
    return out


def ee_position(task_env) -> tuple[float, float, float] | None:
    tcp = getattr(task_env.agent, "tcp", None)
    if tcp is None:
        return None
    p = _np(tcp.pose.p)[0]
    return float(p[0]), float(p[1]), float(p[2])


def gripper_state(task_env) -> str:
    """'open' / 'closed' from the gripper joints against their limits, or 'none' (e.g. a stick)."""
    ctrl = _sub_controllers(task_env.agent.controller).get("gripper")
    if ctrl is None or getattr(ctrl.config, "lower", None) is None:
        return "none"
    q = float(np.mean(_np(ctrl.qpos)[0]))
    lo, hi = float(np.min(ctrl.config.lower)), float(np.max(ctrl.config.upper))
    return "open" if q > lo + 0.5 * (hi - lo) else "closed"


def grasped(task_env, objects: list[Body], info: dict) -> str | None:
    """Name of the object held by the gripper. Tasks that already report it in info
    (``is_grasped``, ``is_cubeA_grasped``) are read from there: the contact query is not free."""
    movable = [b.name for b in objects if b.kind == "object"]
    if "is_grasped" in info and len(movable) == 1:
        return movable[0] if bool(_np(info["is_grasped"]).reshape(-1)[0]) else None
    reported = [n for n in movable if f"is_{n}_grasped" in info]
    if reported:
        return next((n for n in reported if bool(_np(info[f"is_{n}_grasped"]).reshape(-1)[0])), None)
    is_grasping = getattr(task_env.agent, "is_grasping", None)
    if is_grasping is None:
        return None
    for name in movable:
        try:
            if bool(_np(is_grasping(getattr(task_env, name)))[0]):
                return name
        except Exception:  # noqa: BLE001 - articulated or static actors the check does not support
            continue
    return None


class Workspace:
    """Projects table xy onto a rows x cols grid: rows follow x, columns y (clipped at the edges)."""

    def __init__(self, bounds: tuple[float, float, float, float], rows: int, cols: int):
        self.x0, self.x1, self.y0, self.y1 = bounds
        self.rows, self.cols = rows, cols

    def cell(self, position) -> tuple[int, int]:
        x, y = float(position[0]), float(position[1])
        r = int(np.floor((x - self.x0) / (self.x1 - self.x0) * self.rows))
        c = int(np.floor((y - self.y0) / (self.y1 - self.y0) * self.cols))
        return min(max(r, 0), self.rows - 1), min(max(c, 0), self.cols - 1)


# -- controller: action names and the "hold" action ---------------------------------------------
_EE_NAMES = ["x", "y", "z", "rot_x", "rot_y", "rot_z"]


def _sub_controllers(controller) -> dict:
    return dict(getattr(controller, "controllers", None) or {"": controller})


def _slices(controller) -> dict[str, tuple[int, int]]:
    mapping = getattr(controller, "action_mapping", None)
    if mapping:
        return {uid: (int(a), int(b)) for uid, (a, b) in mapping.items()}
    return {"": (0, int(controller.single_action_space.shape[0]))}


def action_names(controller) -> list[str]:
    names = []
    for uid, (a, b) in _slices(controller).items():
        ctrl = _sub_controllers(controller)[uid]
        n, cls = b - a, type(ctrl).__name__
        delta = "delta " if getattr(ctrl.config, "use_delta", False) else ""
        if cls.startswith("PDEEPos") and n in (3, 6):
            names += [f"{uid} {delta}{_EE_NAMES[i]}".strip() for i in range(n)]
        elif uid == "gripper" and n == 1:
            names.append("gripper (low = closed, high = open)")
        else:
            names += [f"{uid or 'action'} {delta}{i}".strip() for i in range(n)]
    return names


def initial_hold(controller) -> np.ndarray:
    """The action that keeps the robot where it is now: 0 for delta and velocity
    controllers, the current joint positions (normalized) for absolute joint controllers."""
    hold = np.zeros(int(controller.single_action_space.shape[0]), dtype=np.float32)
    for uid, (a, b) in _slices(controller).items():
        ctrl, cfg = _sub_controllers(controller)[uid], _sub_controllers(controller)[uid].config
        if getattr(cfg, "use_delta", False) or "Vel" in type(ctrl).__name__ or getattr(cfg, "lower", None) is None:
            continue
        q = _np(ctrl.qpos)[0].astype(np.float64)
        q = q if q.size == b - a else np.full(b - a, q.mean())
        if getattr(cfg, "normalize_action", False):
            lo, hi = np.broadcast_to(cfg.lower, q.shape), np.broadcast_to(cfg.upper, q.shape)
            q = 2 * (q - lo) / (hi - lo) - 1
        hold[a:b] = q
    low, high = controller.single_action_space.low, controller.single_action_space.high
    return np.clip(hold, low, high).astype(np.float32)


def delta_mask(controller) -> np.ndarray:
    """True for action dims that are deltas/velocities (held at 0), False for absolute targets (held at the last command)."""
    mask = np.zeros(int(controller.single_action_space.shape[0]), dtype=bool)
    for uid, (a, b) in _slices(controller).items():
        ctrl = _sub_controllers(controller)[uid]
        mask[a:b] = bool(getattr(ctrl.config, "use_delta", False)) or "Vel" in type(ctrl).__name__
    return mask
