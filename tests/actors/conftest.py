"""Fixtures of the actor tests: the tiny CPU engine (built once), real env servers, the learner's real services."""
from __future__ import annotations

import pytest

from atlasrl.actors.config import ActorConfig

SMALL_ENV = {"text_mode": "relative", "max_actions_per_turn": "1", "max_steps": "6", "image_size": "32"}


@pytest.fixture(scope="session")
def tiny_engine():
    from atlasrl.actors.engines import EngineConfig, make_engine
    from atlasrl.models.tiny import tiny_model_path

    engine = make_engine(EngineConfig(model=str(tiny_model_path("qwen2")), seed=0))
    yield engine
    engine.close()


@pytest.fixture
async def env_server():
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer

    server = EnvServer(EnvServerConfig(port=0, workers=0))
    await server.start()
    yield server
    await server.stop(0)


@pytest.fixture
async def learner(tiny_engine):
    from .learner_endpoint import LearnerEndpoint

    ep = await LearnerEndpoint(vocab_size=model_vocab(tiny_engine)).start()
    yield ep
    await ep.stop()


def actor_config(**kw) -> ActorConfig:
    # max_learner_backlog=0: the learner endpoint of these tests does not train unless a test makes it, so the
    # default bound (one learner batch) would park the actor for good; the pacing tests set their own bound.
    base = dict(model="tiny", num_envs=4, group_size=2, use_image=False, env_config=dict(SMALL_ENV), max_learner_backlog=0)
    base.update(kw)
    return ActorConfig(**base)


def model_vocab(engine) -> int:
    """Rows of the output embedding (the tokenizer's vocab padded up): what may be sampled."""
    return int(engine.policy.model.get_output_embeddings().weight.shape[0])
