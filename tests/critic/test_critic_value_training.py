"""Backend (b) end to end: record random-policy FrozenLake episodes from a real env server, train the value critic
on their env success labels, serve the checkpoint and score frames with it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from atlasrl.clients.critic import CriticClient
from atlasrl.critic.config import CriticConfig, CriticRecordConfig, CriticTrainConfig
from atlasrl.critic.record import read_episodes, record_episodes, write_episode
from atlasrl.critic.server import CriticServer
from atlasrl.critic.train import agreement, train_value_critic
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.server import EnvServer
from atlasrl.rpc import ServerConfig
from atlasrl.v1 import critic_pb2


async def test_record_train_serve(tmp_path):
    envs = EnvServer(EnvServerConfig(port=0, workers=0))
    await envs.start()
    try:
        data = tmp_path / "fl.critic"
        n, wins = await record_episodes(CriticRecordConfig(env=envs.address, episodes=60, num_envs=8,
                                                           env_config={"size": "4", "image_size": "32"},
                                                           out=str(data)))
    finally:
        await envs.stop(0)
    eps = list(read_episodes(data))
    assert n == len(eps) == 60 and sum(e.success for e in eps) == wins
    for ep in eps:     # every state's frame, the last one's success flag is the label
        assert len(ep.frames) >= 2 and ep.task
        assert [f.oracle.success for f in ep.frames] == [False] * (len(ep.frames) - 1) + [ep.success]
    ck = tmp_path / "critic.pt"
    report = train_value_critic(CriticTrainConfig(data=[str(data)], out=str(ck), epochs=1, side=16, holdout=0.25))
    json.dumps(report)
    assert report["episodes"] == 60 and report["holdout_episodes"] == 15 and ck.is_file()
    assert 0 <= report["holdout"]["progress_mae"] <= 1
    assert 0 <= report["holdout"]["failed_end_progress_mean"] <= 1   # the value a failed episode's end earns
    server = CriticServer(CriticConfig(server=ServerConfig(port=0), backend="value", model=str(ck)))
    await server.start()
    try:
        async with CriticClient(server.address) as c:
            info = await c.info()
            scores = await c.score(eps[0].task, list(eps[0].frames))
    finally:
        await server.stop(0)
    assert info.model == str(ck) and len(scores) == len(eps[0].frames)
    assert all(0 <= s.progress <= 1 and 0 <= s.done_probability <= 1 for s in scores)


def test_a_truncated_file_is_refused_naming_the_byte(tmp_path):
    path = tmp_path / "bad.critic"
    with open(path, "wb") as fh:
        write_episode(fh, critic_pb2.RecordedEpisode(episode_id="a", task="t", success=True))
    raw = path.read_bytes()
    path.write_bytes(raw + raw[:-2])
    with pytest.raises(ValueError, match="truncated episode at byte"):
        list(read_episodes(path))


def test_agreement_counts():
    pred = np.array([True, True, False, False, True])
    truth = np.array([True, False, True, False, True])
    a = agreement(pred, truth)
    assert a["precision"] == pytest.approx(2 / 3) and a["recall"] == pytest.approx(2 / 3) and a["positives"] == 3
