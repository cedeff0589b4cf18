"""Fixtures: a real env server on a loopback port 0, in the test's event loop or in a thread."""
from __future__ import annotations

import asyncio
import threading

import pytest

from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.server import EnvServer


@pytest.fixture
async def start_server():
    """start_server(**config) -> a started EnvServer on port 0 (pass metrics_port=0 for /metrics); stopped after the test."""
    servers: list[EnvServer] = []

    async def start(**overrides) -> EnvServer:
        cfg = EnvServerConfig(**{"port": 0, "workers": 0, "grace_s": 0.5, **overrides})
        server = EnvServer(cfg)
        await server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        await s.stop(0)


@pytest.fixture
async def server(start_server):
    return await start_server()


class ThreadedServer:
    """An EnvServer on its own event loop in a thread, for synchronous clients (dm_env_rpc, unittest)."""

    def __init__(self, **overrides):
        self.cfg = EnvServerConfig(**{"port": 0, "workers": 0, "grace_s": 0.5, **overrides})
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        return self

    async def _start(self) -> EnvServer:
        server = EnvServer(self.cfg)
        await server.start()
        return server

    @property
    def address(self) -> str:
        return self.server.address

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def same_observation(a, b) -> bool:
    """Two EnvObservations of the same state: text, reward, agent, step, end and layout, and the same frame."""
    import numpy as np

    return (a.text, a.reward, a.agent, a.step, a.done, a.layout_key) == (b.text, b.reward, b.agent, b.step, b.done, b.layout_key) \
        and np.array_equal(a.images[0], b.images[0])
