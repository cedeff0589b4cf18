import os

import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls on the shared 2-core machines run fastest (and reproducibly) on one torch thread."""
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
