"""Every service on main, served by its real server classes in a background event loop.

``ROLE_SERVERS`` builds each role's server; the fuzz suite and the secure-stack
test take the services to exercise from what each server registered, so a new
service or method is covered without editing the tests. ``test_every_v1_service_is_hosted``
fails when an ``atlasrl.v1`` service has no server here.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pool


@dataclass
class Hosted:
    role: str
    address: str
    services: list          # ServiceDescriptors served (health/reflection excluded)
    state: Callable[[], object]   # snapshot of the state a rejected request must not change


async def _env(tmp: Path):
    from atlasrl.envserver.config import EnvServerConfig
    from atlasrl.envserver.server import EnvServer

    s = EnvServer(EnvServerConfig(port=0, workers=0))
    await s.start()
    return s, s.rpc, lambda: (s.manager.live, s.manager.steps_total)


async def _memory(tmp: Path):
    from atlasrl.memory.config import MemoryConfig
    from atlasrl.memory.server import MemoryServer
    from atlasrl.rpc import ServerConfig

    s = MemoryServer(MemoryConfig(server=ServerConfig(port=0), data_dir=tmp / "memory"))
    await s.start()
    return s, s.rpc, lambda: s.state.version


async def _coordinator(tmp: Path):
    from atlasrl.coordinator.config import CoordinatorConfig
    from atlasrl.coordinator.server import CoordinatorServer
    from atlasrl.rpc import ServerConfig

    s = CoordinatorServer(CoordinatorConfig(server=ServerConfig(port=0), state_dir=tmp / "coordinator"))
    await s.start()
    return s, s.rpc, lambda: (s.store.run_state, len(s.store.members(alive_only=False)), s.store.policy_version)


class _LearnerServices:
    """The learner's rank-0 services (TrajectoryService + WeightService) as LearnerHost wires them, minus the model."""

    async def start(self):
        from atlasrl.learner.buffer import EpisodeBuffer
        from atlasrl.learner.config import LearnerConfig
        from atlasrl.learner.metrics import LearnerMetrics
        from atlasrl.learner.trajectory_service import TrajectoryServicer
        from atlasrl.learner.weight_service import WeightServicer
        from atlasrl.rpc import RpcServer, ServerConfig
        from atlasrl.v1 import trajectory_pb2, weights_pb2

        cfg = LearnerConfig(model="x", batch_episodes=2)
        self.metrics = LearnerMetrics()
        self.buffer = EpisodeBuffer(cfg, 256)
        self.weights = WeightServicer(self.metrics)
        self.rpc = RpcServer(ServerConfig(port=0), self.metrics.metrics)
        self.rpc.add(TrajectoryServicer(self.buffer, lambda: 0, self.metrics), trajectory_pb2.DESCRIPTOR.services_by_name["TrajectoryService"])
        self.rpc.add(self.weights, weights_pb2.DESCRIPTOR.services_by_name["WeightService"])
        await self.rpc.start()

    async def stop(self, grace=None):
        await self.rpc.stop(grace)


async def _learner(tmp: Path):
    s = _LearnerServices()
    await s.start()
    latest = lambda: getattr(getattr(s.weights, "latest", None), "version", None)  # noqa: E731 - a one-line helper
    return s, s.rpc, lambda: (s.buffer.buffered, latest())


async def _critic(tmp: Path):
    from atlasrl.critic.config import CriticConfig
    from atlasrl.critic.server import CriticServer
    from atlasrl.rpc import ServerConfig

    s = CriticServer(CriticConfig(server=ServerConfig(port=0)))   # the default: value backend, seeded weights, no files
    await s.start()
    return s, s.rpc, lambda: (s.batcher.frames, s.batcher.batches)


ROLE_SERVERS = {"envserver": _env, "memory": _memory, "coordinator": _coordinator, "learner": _learner, "critic": _critic}


def _served(rpc) -> list:
    pool = descriptor_pool.Default()
    return [pool.FindServiceByName(n) for n in rpc._names if not n.startswith("grpc.")]


class Stack:
    """Start every role's server in a background loop; ``stop()`` ends them."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-servers", daemon=True)
        self.servers = []
        self.hosted: list[Hosted] = []

    def start(self) -> Stack:
        self.thread.start()
        for role, make in ROLE_SERVERS.items():
            server, rpc, state = self.call(make(self.tmp))
            self.servers.append(server)
            self.hosted.append(Hosted(role, rpc.address, _served(rpc), state))
        return self

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def state(self, hosted: Hosted):
        """Read state on the server loop (no races with in-flight handlers)."""
        async def read():
            return hosted.state()
        return self.call(read())

    def stop(self) -> None:
        for s in self.servers:
            try:
                self.call(s.stop(0))
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
