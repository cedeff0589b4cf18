import pytest

from atlasrl.coordinator.config import CoordinatorConfig
from atlasrl.coordinator.server import CoordinatorServer
from atlasrl.rpc import ServerConfig


def _make_cfg(tmp_path, port=0, **kw) -> CoordinatorConfig:
    return CoordinatorConfig(server=ServerConfig(port=port, metrics_port=0), state_dir=tmp_path / "state", **kw)


@pytest.fixture
def make_cfg():
    """Factory: make_cfg(tmp_path, port=0, **coordinator_settings)."""
    return _make_cfg


@pytest.fixture
async def coordinator(tmp_path):
    server = CoordinatorServer(_make_cfg(tmp_path, lease_ttl_s=1.0, max_staleness=2, history_interval_s=0.1))
    await server.start()
    yield server
    await server.stop(0)
