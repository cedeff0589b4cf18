import os

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir():
    """A tiny Qwen2 (hidden 64, 2 layers) with tokenizer and chat template, as `atlasrl model tiny` builds it."""
    from atlasrl.models.tiny import tiny_model_path

    return str(tiny_model_path("qwen2", hidden=64, layers=2))


@pytest.fixture(autouse=True)
def _quiet_threads():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
