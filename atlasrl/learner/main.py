"""torchrun entry of the learner: ``python -m torch.distributed.run ... -m atlasrl.learner.main CONFIG.{json,yaml}``.

Every rank builds the sharded policy; rank 0 also hosts the TrajectoryService
and WeightService (LearnerHost). The loop, on every rank in lock-step:

1. rank 0 waits up to ``idle_poll_s`` for ``batch_episodes`` episodes and
   broadcasts the batch (or "idle" / "stop") over a gloo group;
2. all ranks run the update (``Trainer.update``);
3. all ranks gather the full tensors one by one (``DTensor.full_tensor``, the
   same order everywhere); rank 0 encodes bf16 chunks and publishes them;
4. every ``ckpt_every`` updates, and at shutdown, a DCP checkpoint.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from atlasrl import log as alog
from atlasrl.learner import checkpoint
from atlasrl.learner.config import LearnerConfig
from atlasrl.learner.ledger import LEDGER_FILE, EpisodeLedger, next_version
from atlasrl.learner.server import LearnerHost
from atlasrl.learner.trainer import TrainBatch, Trainer, backend_device
from atlasrl.v1 import tensor_pb2
from atlasrl.weight_codec import TensorBlob

log = logging.getLogger("atlasrl.learner")
WIRE = {"bf16": (torch.bfloat16, tensor_pb2.DTYPE_BFLOAT16), "fp32": (torch.float32, tensor_pb2.DTYPE_FLOAT32)}


def tensor_blob(name: str, t: torch.Tensor, wire: int) -> TensorBlob:
    raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.zeros(0, np.uint8)
    return TensorBlob(name, wire, tuple(t.shape), memoryview(raw))  # type: ignore[arg-type]  # numpy declares ndarray.__buffer__ for Python 3.12+ only


def publish(trainer: Trainer, host: LearnerHost | None, cfg: LearnerConfig) -> float:
    """Gather full tensors (collective), encode and publish on rank 0 by every offered transport; returns seconds."""
    t0 = time.perf_counter()
    dtype, wire = WIRE[cfg.wire_dtype]
    full = [(name, t) for name, t in trainer.full_tensors(dtype) if t is not None]
    blobs = [tensor_blob(name, t, wire) for name, t in full]
    if host is not None:
        if host.ledger is not None:  # lineage first: a version actors may have seen is never reused
            host.ledger.publishing(trainer.version)
        host.publish_version(trainer.version, blobs, [t for _, t in full])
        seconds = time.perf_counter() - t0
        host.metrics.publish_seconds.observe(seconds)
        host.metrics.version.set(trainer.version)
        return seconds
    return time.perf_counter() - t0


class StopFlag:
    def __init__(self):
        self.set = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, *_):
        self.set = True


def run(cfg: LearnerConfig) -> None:
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    backend, device = backend_device(int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=cfg.dist_timeout_s))
    ctrl = dist.new_group(backend="gloo") if backend != "gloo" else None   # control messages (objects) stay on CPU
    stop = StopFlag()
    trainer = Trainer(cfg, rank, world, device)
    restored = checkpoint.load(trainer, cfg.ckpt_dir) if cfg.ckpt_dir else None
    ledger = EpisodeLedger(os.path.join(cfg.ckpt_dir, LEDGER_FILE)) if rank == 0 and cfg.ckpt_dir and cfg.ledger else None
    restored_version = trainer.version
    resume = [next_version(restored_version, ledger.published_version()) if ledger is not None else restored_version]
    dist.broadcast_object_list(resume, src=0, group=ctrl)   # every rank schedules lr/entropy by the same version
    trainer.version = resume[0]
    host = LearnerHost(cfg, trainer.vocab_size, version=lambda: trainer.version, model_info=trainer.info,
                       ledger=ledger) if rank == 0 else None
    if host is not None:
        pending = ledger.restore(restored_version) if ledger is not None else None
        if restored and restored.get("buffer"):
            host.buffer.load_state_dict(restored["buffer"], pending=pending)
        elif pending:
            host.buffer.restore_pending(pending)
        if ledger is not None and (pending or trainer.version != restored_version):
            log.warning("resumed from checkpoint version %d as version %d (published up to %d); %d acknowledged "
                        "episodes waiting again", restored_version, trainer.version, ledger.published_version(),
                        len(pending or ()))
        host.start()
    publish(trainer, host, cfg)
    # A stop that came while the model loaded: leave without registering (the coordinator may be gone, and
    # registering retries until it answers; a stop *during* registration abandons it, clients/coordinator.py).
    reg = register(cfg, host, world, trainer.version) if host is not None and cfg.coordinator and not stop.set else None
    if host is not None:
        host.write_ready_file()
        print(f"learner serving on {cfg.host}:{host.port} metrics={host.metrics_port} version={trainer.version} "
              f"world={world} device={device.type}", flush=True)
    updates, saved, clean = 0, trainer.version, False
    try:
        while True:
            msg: list[Any] = [None]  # what rank 0 broadcasts: "stop", "idle" or a TrainBatch
            batch_ids: list[str] = []
            if rank == 0:
                run_stopping = reg is not None and reg.stopping      # `atlasrl up` / operator asked to stop
                if stop.set or run_stopping or (cfg.max_updates is not None and updates >= cfg.max_updates):
                    msg = ["stop"]
                else:
                    assert host is not None  # rank 0 hosts the services
                    batch = host.buffer.take(cfg.batch_episodes, trainer.version, timeout=cfg.idle_poll_s)
                    host.metrics.buffered.set(host.buffer.buffered)
                    batch_ids = [b.episode.episode_id for b in batch or ()]
                    msg = ["idle"] if batch is None else [TrainBatch([b.episode.SerializeToString() for b in batch],
                                                                     [b.weight for b in batch], [b.lag for b in batch])]
            dist.broadcast_object_list(msg, src=0, group=ctrl)
            if msg[0] == "stop":
                break
            if msg[0] == "idle":
                continue
            stats = trainer.update(msg[0])
            updates += 1
            if host is not None and host.ledger is not None:  # before this version can be checkpointed
                host.ledger.trained(batch_ids, trainer.version)
            stats["publish_seconds"] = publish(trainer, host, cfg)
            if host is not None:
                _record(host, msg[0], stats)
            if reg is not None:
                reg.counters["samples_trained"] += len(msg[0].episodes)
                reg.counters["tokens_trained"] += int(stats["tokens"])
                reg.gauges.update({k: stats[k] for k in ("loss", "kl", "entropy", "grad_norm", "clipfrac", "approx_kl")})
                reg.gauges["lr"] = cfg.lr
                reg.policy_version = trainer.version
            if cfg.ckpt_dir and trainer.version % cfg.ckpt_every == 0:
                save_checkpoint(trainer, host, cfg)
                saved = trainer.version
        clean = True
    finally:
        # Only after a clean stop: an error mid-update leaves a half-applied step (and, with several
        # ranks, peers blocked in a collective), which must not become the checkpoint to resume from.
        if clean and cfg.ckpt_dir and saved != trainer.version:
            save_checkpoint(trainer, host, cfg)
        if reg is not None:
            reg.close_in_thread()
        if host is not None:
            host.stop()
            if host.ledger is not None:
                host.ledger.close()
        dist.destroy_process_group()


def save_checkpoint(trainer: Trainer, host: LearnerHost | None, cfg: LearnerConfig) -> None:
    """Collective: every rank writes its shards; then the ledger may forget the bytes of what it covers."""
    assert cfg.ckpt_dir is not None  # callers check cfg.ckpt_dir
    checkpoint.save(trainer, cfg.ckpt_dir, host.buffer.state_dict() if host else None, cfg.ckpt_keep)
    if host is not None and host.ledger is not None:
        host.ledger.checkpointed(trainer.version)


def register(cfg: LearnerConfig, host: LearnerHost, world: int, version: int):
    """Join the run through the coordinator (clients/coordinator.py); heartbeats run in their own thread."""
    from atlasrl.clients.coordinator import RoleRegistration

    assert cfg.coordinator is not None  # the caller checks cfg.coordinator
    metrics = f"{cfg.host}:{host.metrics_port}" if host.metrics_port else ""
    reg = RoleRegistration(cfg.coordinator, role="learner", name=f"learner-{host.port}", address=f"{cfg.host}:{host.port}",
                           metrics_address=metrics, capacity=world, capabilities=[cfg.algo],
                           report=lambda r: report_refusals(r, host))
    reg.policy_version = version
    return reg.start_in_thread()


def report_refusals(reg, host: LearnerHost) -> None:
    """Before each heartbeat (RoleRegistration.report): refusals arrive with or without updates (a stale flood)."""
    refused = dict(host.metrics.refused_counts)   # a copy: the gRPC thread may add a reason meanwhile
    for reason, n in refused.items():
        reg.counters[f"episodes_refused_{reason}"] = n
    reg.counters["episodes_refused"] = sum(refused.values())


def _record(host: LearnerHost, batch: TrainBatch, stats: dict[str, float]) -> None:
    m = host.metrics
    m.record_update(stats)
    m.updates.inc()
    m.consumed.inc(len(batch.episodes))
    m.tokens.inc(stats["tokens"])
    for lag in batch.lags:
        m.staleness.observe(lag)
    log.info("update", extra=alog.kv(**{k: round(v, 5) for k, v in stats.items()}))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m atlasrl.learner.main CONFIG.{json,yaml}  (normally started by `atlasrl learner`)")
    from atlasrl.lifeline import die_with_parent
    die_with_parent(os.getppid())  # torchrun's agent killed: this rank goes too (no orphan keeps a GPU)
    alog.setup()
    from atlasrl.config.loader import ConfigError, load_role_config

    try:
        cfg = load_role_config(LearnerConfig, argv[0])
    except ConfigError as e:
        sys.exit(f"{argv[0]}: {e}")
    run(cfg)


if __name__ == "__main__":
    main()
