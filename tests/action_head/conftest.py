import tempfile

import pytest

from tests.envserver.conftest import start_server  # noqa: F401  (a real env server on port 0)


@pytest.fixture(scope="session")
def process_group():
    """A one-process gloo group (FSDP2 needs one even for a single rank); shared with other test modules."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp(prefix='atlasrl-pg-')}", rank=0, world_size=1)
    yield
