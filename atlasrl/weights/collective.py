"""Collective weight transport: the learner (rank 0) broadcasts each version's bytes to its subscribers over a
dedicated torch.distributed group, gloo on CPU and NCCL on GPU, through the same code.

    hub = CollectiveHub(host="10.0.0.1", port=0, backend="gloo", timeout_s=60)     # learner, rank 0 of the service
    hub.info()                                  # CollectiveInfo for Negotiate: TCPStore address, backend
    hub.publish(manifest, flat_tensors)         # training thread: announce to members, (re)form the group, broadcast

    member = CollectiveMember(info)             # subscriber: joins the group named by each round
    buffers = member.receive(manifest, rnd)     # blocking: one uint8 buffer per tensor, in manifest order

The group is not the learner's training group: it is built directly on a TCPStore the learner listens on
(``ProcessGroupGloo(store, rank, world)`` / ``ProcessGroupNCCL``, as verl, AReaL and prime-rl build their
weight-sync groups), so actors join and leave without touching the training ranks. Members are the
subscribers whose Subscribe stream asked for COLLECTIVE. A round is announced on each member's stream
(``begin``, a ``CollectiveRound``, ``end``); when the membership changed since the last round, the round
names a new *generation*: everyone drops the old group and builds the new one under the store prefix
``atlasrl-weights/<generation>``, rank 0 the learner, ranks 1.. the members in join order.

Layout: the tensors are broadcast in manifest order, consecutive tensors smaller than ``bucket_bytes`` packed
into one bucket; a member receives each bucket straight into its slice of one flat buffer of the version's
``total_bytes`` (no assembly copy), then the stream's ``end`` makes the assembler check each tensor's CRC-32.

Failures: a round that fails on the learner (a member that never joins, dies mid-broadcast, times out)
drops the group and *evicts* every member: their streams end with ABORTED, and they fall back to the gRPC
stream (atlasrl/clients/weights.py logs it and counts it). Training goes on; the next round forms a new
generation with whoever subscribes again.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from atlasrl.v1 import weights_pb2

log = logging.getLogger("atlasrl.weights.collective")
MiB = 1 << 20
STORE_PREFIX = "atlasrl-weights"
DEFAULT_BUCKET_BYTES = 64 * MiB


class CollectiveError(RuntimeError):
    """The weight group could not be formed or a broadcast failed."""


def resolve_backend(backend: str) -> str:
    """``auto`` -> nccl with CUDA, else gloo; nccl without CUDA is refused (naming the key)."""
    import torch

    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("learner.weight_collective_backend=nccl needs CUDA, and this host has none")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"learner.weight_collective_backend={backend!r}: expected auto, gloo or nccl")
    return backend


def plan_buckets(sizes: Sequence[int], bucket_bytes: int) -> list[tuple[int, int, int, int]]:
    """(first tensor, end tensor, byte start, byte end) of each broadcast, in order: consecutive tensors packed
    while their sum stays within ``bucket_bytes``; a tensor at least that large goes alone. Both sides compute it."""
    out, i, pos, n = [], 0, 0, len(sizes)
    while i < n:
        j, size = i + 1, sizes[i]
        while j < n and size + sizes[j] <= bucket_bytes and size < bucket_bytes:
            size += sizes[j]
            j += 1
        out.append((i, j, pos, pos + size))
        pos += size
        i = j
    return out


def _local_address_towards(host: str, port: int) -> str:
    """The address of this host's interface that routes to ``host`` (the one gloo must listen on)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port or 1))
            return s.getsockname()[0]
    except OSError:
        return host


def make_group(store, rank: int, world: int, backend: str, timeout_s: float, hostname: str):
    """A process group of ``world`` ranks on ``store`` (blocks until every rank constructed it, or times out)."""
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    if backend == "nccl":
        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = timeout
        return dist.ProcessGroupNCCL(store, rank, world, opts)
    opts = dist.ProcessGroupGloo._Options()  # type: ignore[attr-defined]  # the options class the constructor takes; not in the stubs
    opts._timeout = timeout
    opts._devices = [dist.ProcessGroupGloo.create_device(hostname=hostname)]
    return dist.ProcessGroupGloo(store, rank, world, opts)


def _broadcast(pg, tensor) -> None:
    import torch.distributed as dist

    opts = dist.BroadcastOptions()
    opts.rootRank = 0
    pg.broadcast([tensor], opts).wait()


@dataclass
class _Member:
    member_id: int
    name: str
    send: Callable[[list[bytes] | None], None]   # frames of one round onto the member's stream; None = evicted


@dataclass
class RoundStats:
    version: int
    members: int
    generation: int
    form_s: float = 0.0
    wire_s: float = 0.0
    bytes: int = 0


class CollectiveHub:
    """The learner's side: the TCPStore, the members, the current group and its generation."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, backend: str = "auto", timeout_s: float = 60.0,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES, advertise_host: str | None = None,
                 on_failure: Callable[[str], None] | None = None):
        import torch.distributed as dist

        self.backend = resolve_backend(backend)
        self.timeout_s = timeout_s
        self.bucket_bytes = bucket_bytes
        self.host = advertise_host or host
        self.store = dist.TCPStore(host, port, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=timeout_s))
        self.port = self.store.port
        self.on_failure = on_failure
        self._lock = threading.Lock()
        self._members: dict[int, _Member] = {}
        self._next_id = 0
        self._group: Any = None
        self._group_members: tuple[int, ...] = ()
        self.generation = 0
        self.failures = 0
        self.last: RoundStats | None = None

    def info(self) -> weights_pb2.CollectiveInfo:
        return weights_pb2.CollectiveInfo(store_host=self.host, store_port=self.port, backend=self.backend,
                                          timeout_s=self.timeout_s)

    def join(self, name: str, send: Callable[[list[bytes] | None], None]) -> int:
        with self._lock:
            self._next_id += 1
            self._members[self._next_id] = _Member(self._next_id, name, send)
            return self._next_id

    def leave(self, member_id: int) -> None:
        with self._lock:
            self._members.pop(member_id, None)

    @property
    def members(self) -> int:
        with self._lock:
            return len(self._members)

    def publish(self, manifest: weights_pb2.WeightManifest, tensors: Sequence[Any]) -> RoundStats | None:
        """From the training thread: broadcast one version (``tensors``: flat uint8 torch tensors in manifest
        order) to the current members. Returns None when there are none. A failure evicts every member."""
        with self._lock:
            members = list(self._members.values())
        if not members:
            return None
        ids = tuple(m.member_id for m in members)
        stats = RoundStats(manifest.version, len(members), self.generation)
        try:
            new = ids != self._group_members or self._group is None
            if new:
                self._drop_group()
                self.generation += 1
                stats.generation = self.generation
            world = len(members) + 1
            for rank, m in enumerate(members, start=1):
                rnd = weights_pb2.CollectiveRound(generation=self.generation, rank=rank, world_size=world,
                                                  bucket_bytes=self.bucket_bytes)
                m.send(round_frames(manifest, rnd))
            t0 = time.perf_counter()
            if new:
                store = _prefix_store(self.store, self.generation)
                self._group = make_group(store, 0, world, self.backend, self.timeout_s, self.host)
                self._group_members = ids
            t1 = time.perf_counter()
            stats.form_s = t1 - t0
            stats.bytes = self._broadcast(manifest, tensors)
            stats.wire_s = time.perf_counter() - t1
        except Exception as e:  # noqa: BLE001 - any failure of the group: evict, keep training
            self.failures += 1
            log.warning("weight collective round of version %d failed (%s: %s): evicting %d members to the stream",
                        manifest.version, type(e).__name__, e, len(members))
            self._drop_group()
            with self._lock:
                for m in members:
                    self._members.pop(m.member_id, None)
            for m in members:
                m.send(None)
            if self.on_failure is not None:
                self.on_failure(str(e))
            return None
        self.last = stats
        return stats

    def _broadcast(self, manifest: weights_pb2.WeightManifest, tensors: Sequence[Any]) -> int:
        import torch

        device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else None
        sizes = [t.nbytes for t in manifest.tensors]
        sent = 0
        for i, j, start, end in plan_buckets(sizes, self.bucket_bytes):
            if end == start:
                continue
            parts = [t.reshape(-1).view(torch.uint8) for t in tensors[i:j] if t.numel()]
            bucket = parts[0] if j - i == 1 else torch.cat(parts)
            if device is not None:
                bucket = bucket.to(device, non_blocking=True)
            _broadcast(self._group, bucket)
            sent += end - start
        return sent

    def _drop_group(self) -> None:
        g, self._group, self._group_members = self._group, None, ()
        if g is not None:
            try:
                g.shutdown()
            except Exception:  # noqa: BLE001 - a broken group may refuse to shut down; it is dropped anyway
                pass

    def close(self) -> None:
        self._drop_group()
        with self._lock:
            members, self._members = list(self._members.values()), {}
        for m in members:
            m.send(None)


def _prefix_store(store, generation: int):
    import torch.distributed as dist

    return dist.PrefixStore(f"{STORE_PREFIX}/{generation}", store)


def round_frames(manifest: weights_pb2.WeightManifest, rnd: weights_pb2.CollectiveRound) -> list[bytes]:
    """begin, collective, end of one collective round, serialized."""
    v = manifest.version
    return [weights_pb2.WeightUpdate(version=v, begin=manifest).SerializeToString(),
            weights_pb2.WeightUpdate(version=v, collective=rnd).SerializeToString(),
            weights_pb2.WeightUpdate(version=v, end=weights_pb2.VersionEnd(num_tensors=len(manifest.tensors))).SerializeToString()]


@dataclass
class CollectiveMember:
    """A subscriber's side: joins the generation each round names and receives its buckets."""

    info: weights_pb2.CollectiveInfo
    store: Any = None
    generation: int = 0
    group: Any = None
    local_host: str = ""
    last_wire_s: float = 0.0
    last_form_s: float = 0.0
    timings: list[tuple[float, float]] = field(default_factory=list)

    def connect(self) -> None:
        """Reach the learner's TCPStore and check the backend can run here; raises CollectiveError otherwise."""
        import torch
        import torch.distributed as dist

        if self.info.backend == "nccl" and not torch.cuda.is_available():
            raise CollectiveError("the learner's weight group runs nccl and this host has no CUDA")
        if self.info.backend not in ("gloo", "nccl"):
            raise CollectiveError(f"unknown collective backend {self.info.backend!r}")
        try:
            self.store = dist.TCPStore(self.info.store_host, self.info.store_port, is_master=False,
                                       timeout=timedelta(seconds=max(1.0, self.info.timeout_s)))
        except Exception as e:  # noqa: BLE001 - RuntimeError/DistNetworkError: unreachable store
            raise CollectiveError(f"cannot reach the weight group's store at {self.info.store_host}:{self.info.store_port}: {e}") from None
        self.local_host = _local_address_towards(self.info.store_host, self.info.store_port)

    def receive(self, manifest: weights_pb2.WeightManifest, rnd: weights_pb2.CollectiveRound) -> list[Any]:
        """Blocking: this round's bytes, one uint8 numpy view per tensor (slices of one flat buffer)."""
        import torch

        if self.store is None:
            self.connect()
        t0 = time.perf_counter()
        try:
            if rnd.generation != self.generation or self.group is None:
                self.close_group()
                self.group = make_group(_prefix_store(self.store, rnd.generation), rnd.rank, rnd.world_size,
                                        self.info.backend, self.info.timeout_s, self.local_host)
                self.generation = rnd.generation
            t1 = time.perf_counter()
            sizes = [t.nbytes for t in manifest.tensors]
            device = torch.device("cuda", torch.cuda.current_device()) if self.info.backend == "nccl" else torch.device("cpu")
            flat = torch.empty(sum(sizes), dtype=torch.uint8, device=device)
            for _i, _j, start, end in plan_buckets(sizes, int(rnd.bucket_bytes) or DEFAULT_BUCKET_BYTES):
                if end > start:
                    _broadcast(self.group, flat[start:end])
            t2 = time.perf_counter()
        except Exception as e:  # noqa: BLE001 - gloo/nccl errors and timeouts
            self.close_group()
            raise CollectiveError(f"weight broadcast of version {manifest.version} failed: {e}") from None
        self.last_form_s, self.last_wire_s = t1 - t0, t2 - t1
        host = flat.cpu().numpy() if device.type != "cpu" else flat.numpy()
        out, pos = [], 0
        for n in sizes:
            out.append(host[pos : pos + n])
            pos += n
        return out

    def close_group(self) -> None:
        g, self.group, self.generation = self.group, None, 0
        if g is not None:
            try:
                g.shutdown()
            except Exception:  # noqa: BLE001 - dropped anyway
                pass

    def close(self) -> None:
        self.close_group()
        self.store = None
