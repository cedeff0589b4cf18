import numpy as np
import pytest

from atlasrl.actors.engines import EngineConfig, GenerationRequest, make_engine
from atlasrl.models.chat import system, user
from atlasrl.models.tiny import tiny_model_path

ACTIONS = ["Up", "Down", "Left", "Right"]


def requests(n_images: int, count: int = 4, choice_every: int = 2, seed: int = 0):
    """Mixed batch: prompts of different lengths (padding), every other one in choice mode."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        imgs = [rng.integers(0, 256, (56 + 28 * i, 84, 3), dtype=np.uint8) for _ in range(n_images)]
        msgs = [system("You push boxes."), user("Where next? " * (i + 1), images=n_images)]
        out.append(GenerationRequest(msgs, imgs, choices=ACTIONS if i % choice_every == 1 else None))
    return out


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls on shared 2-core CI machines run fastest on one torch thread."""
    import torch

    before = torch.get_num_threads()
    yield 1
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def text_engine(one_thread):
    return make_engine(EngineConfig(model=str(tiny_model_path("qwen2", seed=0)), threads=one_thread))


@pytest.fixture(scope="module")
def vl_engine(one_thread):
    return make_engine(EngineConfig(model=str(tiny_model_path("qwen2.5-vl", seed=0)), threads=one_thread))
