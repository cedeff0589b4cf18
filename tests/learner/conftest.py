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
def tiny_model_dir(tmp_path_factory):
    from .helpers import tiny_qwen2

    path = tmp_path_factory.mktemp("tiny-qwen2")
    tiny_qwen2().save_pretrained(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def _quiet_threads():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
