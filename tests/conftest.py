"""Fixtures shared by every test directory."""
import tempfile

import pytest


@pytest.fixture(scope="session")
def process_group():
    """A one-process gloo group in this test process: the Trainer's FSDP2 needs one even for a single rank.

    Left for the process to tear down: other modules of the session reuse it."""
    import torch.distributed as dist

    if not dist.is_initialized():
        store = tempfile.mktemp(prefix="atlasrl-pg-")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
