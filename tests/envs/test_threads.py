"""Env instances share only read-only state (the sprite atlas cache): stepping them from
threads, as the env server's thread pool does, gives exactly the sequential results."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from atlasrl.envserver import registry

TEXTS = ["Up", "Down, Left", "Right Right", "Left", "Down", "Up, Right, Down"]


def episode_trace(env_id: str, seed: int) -> list:
    env = registry.make(env_id, {"size": "7" if env_id == "sokoban" else "6", "max_steps": "1000"}, seed=seed)
    trace = []
    for turn in range(60):
        out = env.text_step(TEXTS[(seed + turn) % len(TEXTS)])
        trace.append((out.text, out.reward, out.images[0].tobytes()))
        if out.terminated or out.truncated:
            out = env.text_reset()
            trace.append((out.text, out.images[0].tobytes()))
    return trace


def test_threaded_stepping_matches_sequential():
    jobs = [(env_id, seed) for env_id in ("frozenlake", "sokoban") for seed in range(3)]
    sequential = [episode_trace(*job) for job in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda job: episode_trace(*job), jobs))
    assert threaded == sequential
    assert len({np.frombuffer(t[0][-1], np.uint8).sum() for t in sequential}) > 1
