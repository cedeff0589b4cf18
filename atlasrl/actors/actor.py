"""The actor role: wires env servers, engine, weights, memory, trajectory sender and coordinator.

    await run_actor(ActorConfig(envs=["127.0.0.1:50051"], learner="127.0.0.1:50052", model=DIR),
                    ServerConfig(port=0, metrics_port=9103))

The process serves gRPC health (and /metrics) on ``--port``/``--metrics-port``
so operators and the coordinator can probe it; it has no service of its own:
it is a client of every other role. With ``--coordinator``, it registers,
reports counters with each heartbeat, follows the run state and, when no
``--envs``/``--learner``/``--memory`` were given, takes them from its assignment.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from atlasrl.actors.config import ActorConfig, engine_config, resolve_images
from atlasrl.actors.gate import FlowGate
from atlasrl.actors.metrics import ActorMetrics
from atlasrl.actors.rollout import RolloutLoop, env_clients
from atlasrl.clients.spool import OUTCOMES
from atlasrl.rpc import RpcServer, ServerConfig

if TYPE_CHECKING:  # imported lazily at run time (torch, the engines)
    from atlasrl.actors.memory_hints import MemoryAdvisor
    from atlasrl.actors.policy import Policy
    from atlasrl.clients.coordinator import RoleRegistration
    from atlasrl.clients.trajectory import TrajectorySender

log = logging.getLogger("atlasrl.actor")


def build_engine(cfg: ActorConfig):
    """The engine the actor's settings describe (``engine_config``: refused naming the key if this host cannot
    honour them), on the GPUs of ``cfg.devices``."""
    from atlasrl.actors.engines import make_engine
    from atlasrl.devices import apply_devices

    if not cfg.model:
        raise ValueError("--model DIR is required (build one with `atlasrl model tiny --out DIR`)")
    apply_devices(cfg.devices, "actor.devices")
    return make_engine(engine_config(cfg))


@dataclass
class ActorParts:
    """What run_actor built, for tests and the bench (all started)."""

    loop: RolloutLoop
    policy: Policy
    sender: TrajectorySender | None
    memory: MemoryAdvisor | None
    registration: RoleRegistration | None
    server: RpcServer


async def start_actor(cfg: ActorConfig, server_cfg: ServerConfig | None = None, *, engine=None,
                      metrics: ActorMetrics | None = None) -> ActorParts:
    from atlasrl.actors.policy import Policy

    if engine is None:   # settings this host cannot honour stop the start here, before anything is serving
        from atlasrl.devices import apply_devices

        apply_devices(cfg.devices, "actor.devices")
        engine_config(cfg)
    m = metrics or ActorMetrics()
    server = RpcServer(server_cfg or ServerConfig(), m.metrics)
    await server.start()
    reg = None
    if cfg.coordinator:
        from atlasrl.clients.coordinator import RoleRegistration

        reg = RoleRegistration(cfg.coordinator, role="actor", name=cfg.actor_id, address=server.address,
                               metrics_address=f"{server.cfg.metrics_host}:{server.metrics_port}" if server.metrics_port else "",
                               capacity=cfg.num_envs, capabilities=[cfg.env_id])
        await reg.start()
        cfg = await _fill_from_assignment(cfg, reg)
    cfg = resolve_images(cfg)
    if not cfg.envs:
        raise ValueError("no env servers: pass --envs ADDR[,ADDR] (or --coordinator with env servers registered)")
    if engine is None:
        engine = await asyncio.to_thread(build_engine, cfg)
    sender = weights = memory = None
    if cfg.learner:
        from atlasrl.clients.spool import open_ledger
        from atlasrl.clients.trajectory import TrajectorySender
        from atlasrl.clients.weights import WeightSubscriber

        if cfg.spool_dir and "actor_id" not in cfg.model_fields_set:
            log.warning("--spool-dir with a random actor id (%s): a restarted actor will not find this spool; "
                        "pass --actor-id", cfg.actor_id)
        spool = await asyncio.to_thread(open_ledger, cfg.spool_dir, cfg.actor_id, keep_payloads=cfg.spool,
                                        observer=m.count_episodes)
        sender = await TrajectorySender(cfg.learner, max_buffered=cfg.max_buffered_episodes, batch_size=cfg.push_batch,
                                        spool=spool, actor_id=cfg.actor_id).start()
        weights = WeightSubscriber(cfg.learner, subscriber_id=cfg.actor_id, after_version=engine.version,
                                   transport=cfg.weight_transport, metrics=m.metrics)
        await weights.negotiate()   # a transport the learner does not offer: start-up error naming the key
    if cfg.memory and (cfg.memory_hints != "none" or cfg.memory_risk or cfg.memory_exemplars or cfg.memory_shaping
                       or cfg.memory_ingest):
        from atlasrl.actors.memory_hints import MemoryAdvisor

        memory = MemoryAdvisor.from_config(cfg, on_miss=m.memory_misses.inc)
    policy = Policy(engine, cfg, weights=weights, metrics=m)
    await policy.start()
    gate = FlowGate(cfg, policy, sender=sender, registration=reg, metrics=m)
    if sender is not None:   # learn the learner's batch and bootstrap wish before the first episode ends
        await gate.poll_learner()

    async def deliver(episode, _buffer) -> None:
        if sender is not None:
            if sender.full:
                m.paused.labels("buffer_full").set(1)
            await sender.put(episode)  # blocks while the buffer is full: generation pauses
            m.paused.labels("buffer_full").set(0)
            m.buffered.set(sender.buffered)

    async def gate_or_stop() -> None:
        await gate()
        if gate.stop_requested:  # the coordinator set the run to STOPPING
            loop.stop()

    critic = await _critic_judge(cfg, m)
    loop = RolloutLoop(cfg, policy, env_clients(cfg.envs), on_episode=deliver, memory=memory, gate=gate_or_stop,
                       admit=gate.admit, metrics=m, wants_bootstrap=lambda: gate.learner_wants_bootstrap,
                       critic=critic)
    parts = ActorParts(loop, policy, sender, memory, reg, server)
    if reg is not None:   # the registration fills each heartbeat from the parts (and the last one at close)
        reg.report = lambda r: report_to_coordinator(r, parts)
    return parts


async def _critic_judge(cfg: ActorConfig, m: ActorMetrics):
    """reward.source=critic: the judge of training episodes (atlasrl/actors/critic_reward.py); None otherwise."""
    if cfg.reward.source != "critic":
        return None
    if not cfg.reward.critic_address:
        raise ValueError("reward.source=critic needs a critic: set reward.critic_address, or register one with the "
                         "coordinator (atlasrl critic --coordinator ADDR)")
    if cfg.memory and cfg.memory_shaping:
        raise ValueError("reward.source=critic with memory_shaping: the memory's shaping is learned from env success, "
                         "which critic-reward training must not use; set memory_shaping=false")
    from atlasrl.actors.critic_reward import CriticJudge

    judge = CriticJudge(cfg.reward, cfg.reward.critic_address, m.metrics)
    await judge.start()
    return judge


async def _fill_from_assignment(cfg: ActorConfig, reg) -> ActorConfig:
    if cfg.reward.source == "critic" and not cfg.reward.critic_address:
        a = await reg.assignment()
        if a.critic_address:
            cfg = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"critic_address": a.critic_address})})
    if cfg.envs and cfg.learner and cfg.memory:
        return cfg
    a = await reg.assignment()
    upd = {}
    if not cfg.envs:
        upd["envs"] = [addr for addr, slots in a.env_servers if slots > 0]
    if not cfg.learner and a.learner_address:
        upd["learner"] = a.learner_address
    if not cfg.memory and a.memory_address:
        upd["memory"] = a.memory_address
    return cfg.model_copy(update=upd)


async def stop_actor(parts: ActorParts, flush_timeout_s: float = 10.0) -> None:
    parts.loop.stop()
    await parts.policy.close()
    if parts.sender is not None:
        await parts.sender.close(flush_timeout_s=flush_timeout_s)
    if parts.memory is not None:
        await parts.memory.flush(timeout=2.0)
        await parts.memory.close()
    if parts.registration is not None:
        # Deregistering must not hold the exit when the coordinator is gone.
        closing = asyncio.ensure_future(parts.registration.close())
        done, _ = await asyncio.wait({closing}, timeout=3.0)
        if not done:
            closing.cancel()
            log.info("deregistration skipped: the coordinator did not answer")
    if parts.loop.critic is not None:
        await parts.loop.critic.close()
    await parts.server.stop(0)


async def run_actor(cfg: ActorConfig, server_cfg: ServerConfig | None = None, *, max_episodes: int | None = None) -> None:
    """The CLI's loop: run until SIGTERM/SIGINT (or max_episodes), then flush and leave."""
    import signal

    parts = await start_actor(cfg, server_cfg)
    run = asyncio.ensure_future(parts.loop.run(max_episodes=max_episodes))

    def on_signal() -> None:
        parts.loop.stop()  # ends after the current batch ...
        asyncio.get_running_loop().call_later(2.0, run.cancel)  # ... or sooner if blocked (learner gone)

    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, on_signal)
    try:
        await run
    except asyncio.CancelledError:
        log.info("stopped while waiting (learner or env servers gone)")
    finally:
        await stop_actor(parts, flush_timeout_s=5.0)


def report_to_coordinator(reg, parts: ActorParts) -> None:
    """Cumulative counters and gauges for the coordinator (RoleRegistration.report: before every heartbeat)."""
    loop = parts.loop
    reg.counters["env_steps"] = loop.env_steps
    reg.counters["tokens"] = loop.tokens
    reg.counters["episodes"] = loop.finished
    reg.counters["dropped_episodes"] = loop.dropped
    if parts.sender is not None:  # delivery accounting of this process (atlasrl/clients/spool.py)
        for outcome in OUTCOMES:
            reg.counters[f"episodes_{outcome}"] = parts.sender.spool.total(outcome)
    reg.gauges["success_rate"] = loop.success_rate
    if loop.critic is not None:
        loop.critic.report(reg.counters, reg.gauges)
    if loop.return_mean == loop.return_mean:   # nan until an episode finished
        reg.gauges["return_mean"] = loop.return_mean
    reg.policy_version = parts.policy.version
