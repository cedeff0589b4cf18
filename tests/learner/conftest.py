import os
import tempfile

import pytest


@pytest.fixture(scope="session")
def process_group():
    """A one-process gloo group in this test process (FSDP2 needs one even for a single rank)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        store = tempfile.mktemp(prefix="atlasrl-pg-")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    # left for the process to tear down: other modules of the session may reuse it


@pytest.fixture(scope="session")
def tiny_model_dir():
    """A tiny Qwen2 (hidden 64, 2 layers) with tokenizer and chat template, as `atlasrl model tiny` builds it."""
    from atlasrl.models.tiny import tiny_model_path

    return str(tiny_model_path("qwen2", hidden=64, layers=2))


@pytest.fixture(autouse=True)
def _quiet_threads():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
