"""The MemoryService compliance suite against the real server on port 0 (RAM-only and with a data dir)."""
import pytest

from atlasrl.memory.compliance import Endpoint, MemoryServiceCompliance
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.server import MemoryServer
from atlasrl.rpc import ServerConfig


class TestMemoryServer(MemoryServiceCompliance):
    @pytest.fixture
    async def memory(self):
        server = MemoryServer(MemoryConfig(server=ServerConfig(port=0, metrics_port=0)))
        await server.start()
        yield Endpoint(server.address, server.metrics_port)
        await server.stop(0)


class TestMemoryServerWithDataDir(MemoryServiceCompliance):
    """Same behaviour when snapshots are on (a short interval makes them run during the tests)."""

    @pytest.fixture
    async def memory(self, tmp_path):
        server = MemoryServer(MemoryConfig(server=ServerConfig(port=0, metrics_port=0), data_dir=tmp_path, snapshot_interval_s=0.05))
        await server.start()
        yield Endpoint(server.address, server.metrics_port)
        await server.stop(0)
