"""Rank 0's gRPC side: TrajectoryService + WeightService on grpc.aio, in a thread with its own loop.

    host = LearnerHost(cfg, vocab_size, version=lambda: trainer.version)
    host.start()                         # returns once the port is bound
    host.publish_version(version, blobs, tensors)   # from the training thread: stream/delta, then the collective
    host.stop()

The training loop owns the main thread (torch, collectives); the asyncio loop
serving actors runs beside it, so pushes and weight streams never wait for a
training step. The buffer is the only shared state (thread-safe).
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable

from atlasrl.learner.buffer import EpisodeBuffer
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.ledger import EpisodeLedger
from atlasrl.learner.metrics import LearnerMetrics
from atlasrl.learner.trajectory_service import TrajectoryServicer
from atlasrl.learner.validation import ModelInputCheck
from atlasrl.learner.weight_service import WeightServicer
from atlasrl.rpc import RpcServer, ServerConfig
from atlasrl.v1 import trajectory_pb2, weights_pb2

log = logging.getLogger("atlasrl.learner")


def _tokens_configured() -> bool:
    from atlasrl.rpc.security import default_security, load_tokens

    return bool(load_tokens(default_security()))


def make_hub(cfg: LearnerConfig, metrics: LearnerMetrics):
    """The weight group's hub (atlasrl/weights/collective.py): a TCPStore on weight_collective_host:port."""
    from atlasrl.weights.collective import CollectiveHub

    host = cfg.weight_collective_host or cfg.host
    return CollectiveHub(host, cfg.weight_collective_port, backend=cfg.weight_collective_backend,
                         timeout_s=cfg.weight_collective_timeout_s, bucket_bytes=cfg.weight_collective_bucket_bytes,
                         on_failure=lambda _reason: metrics.collective_failures.inc())


class LearnerHost:
    def __init__(self, cfg: LearnerConfig, vocab_size: int, version: Callable[[], int], model_info=None,
                 ledger: EpisodeLedger | None = None):
        self.cfg = cfg
        self.metrics = LearnerMetrics()
        check = ModelInputCheck(model_info) if model_info is not None else None
        self.ledger = ledger
        self.buffer = EpisodeBuffer(cfg, vocab_size, check=check, ledger=ledger,
                                    on_drop=self.metrics.count_refused)
        self.hub = make_hub(cfg, self.metrics) if "collective" in cfg.weight_transports else None
        self.weights = WeightServicer(self.metrics, cfg.publish_token, guarded=_tokens_configured(),
                                      transports=tuple(cfg.weight_transports), hub=self.hub, chunk_bytes=cfg.chunk_bytes)
        self.version = version
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: RpcServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> LearnerHost:
        self._thread = threading.Thread(target=self._run, name="learner-grpc", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("learner gRPC server did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        cfg = self.cfg
        scfg = ServerConfig(host=cfg.host, port=cfg.port, metrics_port=cfg.metrics_port, max_message_bytes=cfg.max_message_bytes,
                            max_sessions_per_client=cfg.max_sessions_per_client, session_idle_timeout_s=cfg.session_idle_timeout_s)
        self._server = RpcServer(scfg, self.metrics.metrics)
        self._server.add(TrajectoryServicer(self.buffer, self.version, self.metrics), trajectory_pb2.DESCRIPTOR.services_by_name["TrajectoryService"])
        self._server.add(self.weights, weights_pb2.DESCRIPTOR.services_by_name["WeightService"])
        try:
            await self._server.start()
        except BaseException as e:  # noqa: BLE001 - reported to start()
            self._error = e
            self._ready.set()
            return
        self._done = asyncio.Event()
        self._ready.set()
        await self._done.wait()   # set by stop(), after the server has fully stopped

    async def _shutdown(self, grace: float) -> None:
        try:
            await self._server.stop(grace)
        finally:
            self._done.set()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def metrics_port(self) -> int | None:
        return self._server.metrics_port

    def publish(self, messages) -> int:
        """From the training thread: an encoded version (``encode_version``'s messages) to the serving loop."""
        return asyncio.run_coroutine_threadsafe(self.weights.publish(messages), self._loop).result()

    def publish_version(self, version: int, blobs, tensors=None) -> int:
        """From the training thread: encode the version here (full frames, and the delta when a delta subscriber
        is connected), make it the latest on the serving loop, then broadcast it to the collective's members
        (``tensors``: the same tensors as torch, in ``blobs``' order; blocks until they received it)."""
        prepared = self.weights.prepare(version, blobs)
        asyncio.run_coroutine_threadsafe(self.weights.publish_prepared(prepared), self._loop).result()
        if self.hub is not None and tensors is not None:
            stats = self.hub.publish(prepared.manifest, tensors)
            self.metrics.collective_members.set(self.hub.members)
            if stats is not None:
                self.metrics.collective_seconds.observe(stats.form_s + stats.wire_s)
        return version

    def write_ready_file(self) -> None:
        if self.cfg.ready_file:
            info = {"port": self.port, "metrics_port": self.metrics_port, "version": self.version()}
            with open(self.cfg.ready_file, "w") as f:
                json.dump(info, f)

    def stop(self, grace: float = 1.0) -> None:
        if self.hub is not None:
            self.hub.close()
        if self._loop is None or self._server is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(grace), self._loop).result(timeout=grace + 10)
        self._thread.join(timeout=10)
