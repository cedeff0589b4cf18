"""Recorded episodes for the value critic: the file format and `atlasrl critic record`.

    n, wins = await record_episodes(CriticRecordConfig(env="127.0.0.1:50051", episodes=2000, out="fl.critic"))
    for ep in read_episodes("fl.critic"): ep.frames[t].image, ep.frames[t].oracle.success, ep.success

A file is a sequence of length-delimited ``atlasrl.v1.RecordedEpisode`` messages (varint length, then the
message; atlasrl/protowire.py), appendable and streamable. Frames are kept as the env server sent them (zstd
tensors) with each state's privileged state (OracleState: env success, agent and goal cells), so the same file
trains the value critic and measures it against the oracle.

Why a random policy: the labels must include successes and failures from the start of training, before any
policy is good; on FrozenLake 4x4 a uniform policy succeeds in a few percent of episodes, enough for a few
thousand episodes to hold hundreds of successes.
"""
from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from atlasrl.clients.critic import frame, oracle_state
from atlasrl.critic.config import CriticRecordConfig
from atlasrl.protowire import read_varint, varint
from atlasrl.v1 import critic_pb2


@dataclass
class _Slot:
    handle: int
    episode: critic_pb2.RecordedEpisode | None = None


def write_episode(fh, ep: critic_pb2.RecordedEpisode) -> None:
    raw = ep.SerializeToString()
    fh.write(varint(len(raw)) + raw)


def read_episodes(path: str | Path) -> Iterator[critic_pb2.RecordedEpisode]:
    buf = memoryview(Path(path).read_bytes())
    pos = 0
    while pos < len(buf):
        try:
            n, pos = read_varint(buf, pos)
        except IndexError:
            raise ValueError(f"{path}: truncated length at byte {pos}") from None
        if pos + n > len(buf):
            raise ValueError(f"{path}: truncated episode at byte {pos} ({n} bytes announced)")
        ep = critic_pb2.RecordedEpisode()
        ep.ParseFromString(bytes(buf[pos:pos + n]))
        pos += n
        yield ep


async def record_episodes(cfg: CriticRecordConfig) -> tuple[int, int]:
    """Play ``cfg.episodes`` episodes on consecutive seeds with uniformly random valid actions; (episodes, successes)."""
    from atlasrl.clients.env import EnvClient

    rng = random.Random(cfg.seed_start)
    done = successes = 0
    next_seed = cfg.seed_start
    async with EnvClient(cfg.env, decode_images=False) as envs:
        slots = []
        for _ in range(min(cfg.num_envs, cfg.episodes)):
            handle, spec = await envs.open(cfg.env_id, cfg.env_config)
            slots.append(_Slot(handle))
        if not spec.valid_actions:
            raise ValueError(f"{cfg.env_id} has no discrete valid actions to sample from")
        with open(cfg.out, "wb") as fh:
            async def start(slot: _Slot) -> None:
                nonlocal next_seed
                obs = (await envs.reset(slot.handle, next_seed)).proto
                next_seed += 1
                slot.episode = critic_pb2.RecordedEpisode(episode_id=str(uuid.uuid4()), env_id=cfg.env_id,
                                                     task=spec.instruction, frames=[_frame(obs, spec)])

            started = 0
            for slot in slots:
                await start(slot)
                started += 1
            while done < cfg.episodes:
                live = [s for s in slots if s.episode is not None]
                results = await envs.step([(s.handle, rng.choice(list(spec.valid_actions))) for s in live])
                for slot, r in zip(live, results):
                    obs = r.unwrap().proto
                    ep = slot.episode
                    assert ep is not None
                    ep.frames.append(_frame(obs, spec))
                    if obs.terminated or obs.truncated:
                        ep.success, ep.truncated = bool(obs.success), bool(obs.truncated)
                        write_episode(fh, ep)
                        done += 1
                        successes += int(ep.success)
                        slot.episode = None
                        if started < cfg.episodes:
                            await start(slot)
                            started += 1
    return done, successes


def _frame(obs, spec) -> critic_pb2.Frame:
    return frame(obs.images[0], oracle_state(obs, spec))
