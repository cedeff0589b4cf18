import os
import tempfile

import pytest


@pytest.fixture(scope="session")
def process_group():
    """A one-process gloo group in this test process (the Trainer's FSDP2 needs one even for a single rank)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        store = tempfile.mktemp(prefix="atlasrl-pg-")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls on the shared 2-core machines run fastest (and reproducibly) on one torch thread."""
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
