import numpy as np
import pytest

from atlasrl.models.load import load_policy
from atlasrl.models.tiny import tiny_model_path


@pytest.fixture(scope="session")
def text_policy():
    return load_policy(tiny_model_path("qwen2", seed=0))


@pytest.fixture(scope="session")
def vl_policy():
    return load_policy(tiny_model_path("qwen2.5-vl", seed=0))


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), rng.integers(0, 256, (84, 56, 3), dtype=np.uint8)]
