"""Exact episode accounting on the actor: every episode generated ends acked, refused (with a reason) or lost,
over real gRPC, across a dropped connection and a SIGKILLed sender (spool on: re-sent; off: counted lost)."""
from __future__ import annotations

import asyncio
import logging
import re
import socket
import sqlite3
import sys
import uuid
from collections import Counter
from types import SimpleNamespace

import grpc
import pytest

from atlasrl.clients.spool import EpisodeSpool
from atlasrl.clients.trajectory import TrajectorySender, refusal_reason
from atlasrl.metrics import Metrics
from atlasrl.rpc import RpcServer, ServerConfig
from atlasrl.v1 import common_pb2, trajectory_pb2

from .recording_learner import SERVICE, RecordingLearner, serve_learner

INVALID, PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.FAILED_PRECONDITION.value[0]


def episode(i: int) -> trajectory_pb2.Episode:
    ep = trajectory_pb2.Episode(episode_id=str(uuid.uuid4()), actor_id="actor-0", group_id=f"g{i // 2}", seed=i)
    ep.turns.add(prompt_ids=[1, 2, 3], response_ids=[4], logprobs=[-0.5], loss_mask=[1], policy_version=0,
                 action_mode=trajectory_pb2.ACTION_MODE_FREE, temperature=1.0)
    return ep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def sender_log():
    """Records of the sender's logger (a handler of its own: atlasrl.log.setup() stops propagation to caplog's)."""
    logger, handler = logging.getLogger("atlasrl.clients.trajectory"), Records()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.setLevel(old)
    logger.removeHandler(handler)


def spool_rows(path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return {r[0]: (r[1], r[2]) for r in db.execute("SELECT episode_id, state, reason FROM episodes")}


class RefusingLearner(RecordingLearner):
    """Refuses by seed: 1 mod 5 stale, 2 mod 5 invalid (with reasons), 3 mod 10 as a learner from before
    RejectedEpisode.reason would (FAILED_PRECONDITION '... newer than ...', no reason: unknown_version)."""

    refusals = {1: "stale", 2: "invalid"}

    def refusal(self, ep):
        if ep.seed % 10 == 3:
            return {"status": common_pb2.Status(code=PRECONDITION, message="policy version 9 is newer than the learner's 2")}
        reason = self.refusals.get(ep.seed % 5)
        if reason is None:
            return super().refusal(ep)
        return {"reason": reason, "status": common_pb2.Status(code=PRECONDITION if reason == "stale" else INVALID,
                                                               message=f"seed {ep.seed} is {reason}")}


def expected_outcome(seed: int) -> tuple[str, str]:
    if seed % 10 == 3:
        return "refused", "unknown_version"
    return ("refused", RefusingLearner.refusals[seed % 5]) if seed % 5 in RefusingLearner.refusals else ("acked", "")


async def serve(port: int, learner) -> RpcServer:
    server = RpcServer(ServerConfig(port=port), Metrics("test_learner"))
    server.add(learner, SERVICE)
    await server.start()
    return server


def test_reason_from_status_for_learners_without_one():
    rej = trajectory_pb2.RejectedEpisode
    assert refusal_reason(rej(episode_id="a", reason="stale", status=common_pb2.Status(code=INVALID))) == "stale"
    assert refusal_reason(rej(episode_id="a", status=common_pb2.Status(code=INVALID, message="bad"))) == "invalid"
    assert refusal_reason(rej(episode_id="a", status=common_pb2.Status(code=PRECONDITION, message="7 versions old"))) == "stale"
    assert refusal_reason(rej(episode_id="a", status=common_pb2.Status(
        code=PRECONDITION, message="version 5 is newer than 3"))) == "unknown_version"
    assert refusal_reason(rej(episode_id="", status=common_pb2.Status(code=INVALID))) == "unparseable"


async def test_every_episode_ends_acked_or_refused_across_a_dropped_connection(tmp_path, sender_log):
    port = free_port()
    learner = RefusingLearner()
    learner.lose_acks = 1                       # the first push reaches the learner, its ack does not
    server = await serve(port, learner)
    spool = EpisodeSpool(tmp_path, "actor-0")
    sender = await TrajectorySender(f"127.0.0.1:{port}", batch_size=4, max_buffered=16, backoff_initial_s=0.01,
                                    backoff_max_s=0.1, spool=spool, refusal_log_interval_s=0.3).start()
    n = 200
    eps = [episode(i) for i in range(n)]
    try:
        for ep in eps[:n // 2]:
            await sender.put(ep)
        await sender.flush(timeout=30)          # room in the buffer for what comes while the learner is away
        await server.stop(0)                    # the connection drops; the sender buffers and retries
        for ep in eps[n // 2: n // 2 + 8]:
            await sender.put(ep)
        await asyncio.sleep(0.3)
        assert not sender.connected and sender.stats.push_failures >= 2
        server = await serve(port, learner)     # back on the same address
        for ep in eps[n // 2 + 8:]:
            await sender.put(ep)
        await sender.flush(timeout=30)
    finally:
        await sender.close()
        await server.stop(0)

    expected = {ep.episode_id: expected_outcome(ep.seed) for ep in eps}
    assert spool_rows(spool.path) == expected, "an episode did not end in its one outcome"
    acked = {eid for eid, (state, _) in expected.items() if state == "acked"}
    assert set(learner.episodes) == acked and learner.receptions > n   # the lost ack's batch came twice
    want = Counter(reason for state, reason in expected.values() if state == "refused")
    assert sender.spool.by_reason("refused") == want and sender.stats.rejected == sum(want.values())
    assert sender.spool.total("acked") == len(acked) and sender.stats.queued == n and sender.spool.total("lost") == 0
    assert sender.stats.duplicates >= 1
    assert spool.session == {("generated", ""): n, ("acked", ""): len(acked),
                             **{("refused", r): k for r, k in want.items()}}

    # The refusals were summarised: the first of each reason in full, then counts, not one line per episode.
    lines = [r.getMessage() for r in sender_log.records if r.levelno >= logging.WARNING]
    firsts = [m for m in lines if "first with reason" in m]
    summaries = [m for m in lines if "in the last" in m]
    assert sorted(re.search(r"reason (\w+)", m).group(1) for m in firsts) == sorted(want)
    assert len(firsts) + len(summaries) == len(lines) < 20 < sum(want.values())
    summed = Counter()
    for m in summaries:
        for reason, k in re.findall(r"(\w+)=(\d+)", m):
            summed[reason] += int(k)
    assert summed + Counter(want.keys()) == want, "the summary lines do not add up to the refusals"


async def test_summary_logs_one_line_per_interval(sender_log):
    """A flood of refusals over ~1.2 s with a 0.4 s interval: a handful of lines, not one per episode."""
    server, _learner = await serve_learner(learner=RefusingLearner())
    try:
        async with TrajectorySender(server.address, batch_size=2, refusal_log_interval_s=0.4) as sender:
            loop = asyncio.get_running_loop()
            start, i = loop.time(), 0
            while loop.time() - start < 1.2:
                await sender.put(trajectory_pb2.Episode(episode_id=str(uuid.uuid4()), seed=5 * i + 1,
                                                        turns=[trajectory_pb2.TurnRecord(response_ids=[1])]))
                i += 1
                await asyncio.sleep(0.005)
            await sender.flush(timeout=20)
            elapsed = loop.time() - start
        assert sender.spool.by_reason("refused") == {"stale": i} and i > 50
    finally:
        await server.stop(0)
    lines = [r.getMessage() for r in sender_log.records if r.levelno >= logging.WARNING]
    assert sum("first with reason stale" in m for m in lines) == 1
    summaries = [m for m in lines if "in the last" in m]
    assert 1 <= len(summaries) <= elapsed / 0.4 + 2, lines    # + the final flush at close
    assert len(lines) == 1 + len(summaries), "a line per refused episode"
    assert sum(int(re.search(r"stale=(\d+)", m).group(1)) for m in summaries) == i - 1


# -- a sender SIGKILLed with unacked episodes, then restarted on its spool --------------------------------------

CHILD = r"""
import asyncio, sys, uuid
from atlasrl.clients.spool import EpisodeSpool
from atlasrl.clients.trajectory import TrajectorySender
from atlasrl.v1 import trajectory_pb2

async def main(spool_dir, keep, target, n):
    spool = EpisodeSpool(spool_dir, "actor-0", keep_payloads=keep == "1")
    sender = await TrajectorySender(target, batch_size=16, backoff_initial_s=0.05, backoff_max_s=0.2, spool=spool).start()
    for i in range(int(n)):
        ep = trajectory_pb2.Episode(episode_id=str(uuid.uuid4()), actor_id="actor-0", group_id=f"g{i}", seed=i)
        ep.turns.add(prompt_ids=[1, 2, 3], response_ids=[4], logprobs=[-0.5], loss_mask=[1])
        await sender.put(ep)
        print(ep.episode_id, flush=True)
    print("READY", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


async def run_and_kill(spool_dir, keep: bool, target: str, n: int, learner: RecordingLearner | None = None) -> list[str]:
    """A child process puts n episodes through a spooled sender, then is SIGKILLed; returns their ids.
    With ``learner`` (which loses every ack), the kill waits until the learner holds all of them."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(spool_dir), "1" if keep else "0",
                                                target, str(n), stdout=asyncio.subprocess.PIPE)
    try:
        ids = []
        while (line := (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()) != "READY":
            assert line, "the child exited early"
            ids.append(line)
        if learner is not None:
            for _ in range(600):
                if len(learner.episodes) == n:
                    break
                await asyncio.sleep(0.02)
            assert len(learner.episodes) == n
    finally:
        proc.kill()
        await proc.wait()
    assert proc.returncode == -9 and len(ids) == n
    return ids


async def test_killed_sender_spool_on_resends_each_episode_once(tmp_path):
    """Learner unreachable while the sender runs: after the kill and a restart on the spool, the learner
    receives every episode exactly once."""
    port = free_port()                                   # nothing listens here
    ids = await run_and_kill(tmp_path, True, f"127.0.0.1:{port}", 12)
    assert {s for s, _ in spool_rows(tmp_path / "actor-0.sqlite").values()} == {"pending"}
    server, learner = await serve_learner(port)
    try:
        spool = EpisodeSpool(tmp_path, "actor-0")
        assert spool.incarnation == 2 and [e.episode_id for e in spool.recovered] == ids
        async with TrajectorySender(server.address, batch_size=5, spool=spool) as sender:
            await sender.flush(timeout=20)
        assert sender.spool.total("resent") == 12 and sender.spool.total("acked") == 12 and sender.spool.total("lost") == 0
    finally:
        await server.stop(0)
    assert sorted(learner.episodes) == sorted(ids) and learner.receptions == 12, "not exactly once"
    assert spool_rows(tmp_path / "actor-0.sqlite") == {i: ("acked", "") for i in ids}
    assert spool.session == {("resent", ""): 12, ("acked", ""): 12}


async def test_restarted_sender_closes_its_earlier_groups_after_the_resent_episodes_and_before_new_ones(tmp_path):
    """CloseGroups(actor_id) must come after the episodes the killed process left (else their groups would be closed
    before they arrive) and before any new episode (else a new group could be closed half-way)."""
    port = free_port()
    old = await run_and_kill(tmp_path, True, f"127.0.0.1:{port}", 6)
    spool = EpisodeSpool(tmp_path, "actor-0")
    sender = await TrajectorySender(f"127.0.0.1:{port}", batch_size=4, backoff_initial_s=0.05, backoff_max_s=0.2,
                                    spool=spool, actor_id="actor-0").start()
    new = [episode(100 + i) for i in range(5)]
    for ep in new:                       # queued while the learner is still away: they must wait for the close
        await sender.put(ep)
    server, learner = await serve_learner(port)
    try:
        await sender.flush(timeout=20)
        assert sender.groups_closed
    finally:
        await sender.close()
        await server.stop(0)
    assert learner.events == ([("push", i) for i in old] + [("close", "actor-0")]
                              + [("push", e.episode_id) for e in new])


async def test_restarted_actor_settles_the_groups_its_killed_process_left_in_the_learner(tmp_path):
    """With the learner's real buffer: the killed process delivered 2 of a group of 3 and 1 of a group of 2; the
    restarted process's sender closes them at once (no group_timeout_s wait): 2 episodes ready, the lone one dropped
    with reason incomplete_group. Another actor's open group is left alone; a sender without an actor id closes none."""
    from .learner_endpoint import LearnerEndpoint

    lr = await LearnerEndpoint(algo="grpo", batch_episodes=2, group_timeout_s=600).start()
    try:
        def member(actor, group, size):
            ep = episode(0)
            ep.actor_id, ep.group_id, ep.group_size = actor, group, size
            return ep
        async with TrajectorySender(lr.address) as killed:
            for ep in (member("actor-0", "actor-0/seed-7", 3), member("actor-0", "actor-0/seed-7", 3),
                       member("actor-0", "actor-0/seed-8", 2), member("actor-1", "actor-1/seed-0", 2)):
                await killed.put(ep)
            await killed.flush(timeout=20)
        assert killed.groups_closed and lr.buffer.buffered == 4 and lr.buffer.ready == 0
        async with TrajectorySender(lr.address, actor_id="actor-0") as restarted:
            for _ in range(200):
                if restarted.groups_closed:
                    break
                await asyncio.sleep(0.02)
            assert restarted.groups_closed
        assert lr.buffer.buffered == 3 and lr.buffer.ready == 2 and lr.buffer.dropped_incomplete == 1
        assert {e.group_id for e in lr.episodes()} == {"actor-0/seed-7", "actor-1/seed-0"}
    finally:
        await lr.stop()


async def test_killed_sender_whose_acks_were_lost_is_deduplicated_after_restart(tmp_path):
    """The learner holds every episode but no ack reached the sender before the kill: the restarted sender
    re-sends them, the learner answers duplicate, and each ends acked once."""
    learner = RecordingLearner()
    learner.lose_acks = 10**9
    server = await serve(0, learner)
    try:
        ids = await run_and_kill(tmp_path, True, server.address, 10, learner=learner)
        learner.lose_acks = 0
        spool = EpisodeSpool(tmp_path, "actor-0")
        async with TrajectorySender(server.address, spool=spool) as sender:
            await sender.flush(timeout=20)
        assert sender.stats.duplicates == 10 and sender.stats.accepted == 0 and sender.spool.total("acked") == 10
    finally:
        await server.stop(0)
    assert sorted(learner.episodes) == sorted(ids)
    assert spool_rows(tmp_path / "actor-0.sqlite") == {i: ("acked", "") for i in ids}


async def test_killed_sender_spool_off_counts_unacked_episodes_lost(tmp_path):
    port = free_port()
    ids = await run_and_kill(tmp_path, False, f"127.0.0.1:{port}", 8)
    server, learner = await serve_learner(port)
    try:
        spool = EpisodeSpool(tmp_path, "actor-0", keep_payloads=False)
        assert spool.recovered == [] and spool.by_reason("lost") == {"actor_restarted": 8}
        async with TrajectorySender(server.address, spool=spool) as sender:
            assert sender.spool.by_reason("lost") == {"actor_restarted": 8}
            await sender.put(episode(0))
            await sender.flush(timeout=20)
    finally:
        await server.stop(0)
    assert learner.receptions == 1
    rows = spool_rows(tmp_path / "actor-0.sqlite")
    assert {i: rows[i] for i in ids} == {i: ("lost", "actor_restarted") for i in ids} and len(rows) == 9


async def test_close_without_spool_counts_unacked_episodes_lost():
    """No spool: nothing survives the process, but a clean stop still accounts for what it drops."""
    sender = await TrajectorySender(f"127.0.0.1:{free_port()}", backoff_initial_s=0.05).start()
    for i in range(3):
        await sender.put(episode(i))
    await sender.close()
    assert sender.spool.by_reason("lost") == {"actor_stopped": 3} and sender.spool.counts()["states"] == {
        "pending": 0, "acked": 0, "refused": 0, "lost": 3}


# -- the actor: spool from its config, Prometheus counter, coordinator counters ---------------------------------

async def test_actor_spools_counts_and_reports_episode_outcomes(tiny_engine, env_server, learner, tmp_path):
    from atlasrl.actors.actor import report_to_coordinator, start_actor, stop_actor

    from .conftest import actor_config

    cfg = actor_config(envs=[env_server.address], learner=learner.address, actor_id="actor-7", spool_dir=str(tmp_path))
    parts = await start_actor(cfg, engine=tiny_engine)
    try:
        assert isinstance(parts.sender.spool, EpisodeSpool) and parts.sender.spool.path == tmp_path / "actor-7.sqlite"
        await asyncio.wait_for(parts.loop.run(max_episodes=4), 120)
        await parts.sender.flush(30)
        reg = SimpleNamespace(counters=Counter(), gauges={}, policy_version=0)
        report_to_coordinator(reg, parts)
    finally:
        await stop_actor(parts)
    n = parts.loop.finished
    assert n >= 4 and len(learner.episodes()) == n
    assert {k: v for k, v in reg.counters.items() if k.startswith("episodes_")} == {
        "episodes_generated": n, "episodes_acked": n, "episodes_refused": 0, "episodes_lost": 0, "episodes_resent": 0}
    assert reg.counters["episodes"] == n
    expo = parts.policy.m.metrics.exposition()
    assert f'atlasrl_actor_episode_outcomes_total{{outcome="generated",reason=""}} {float(n)}' in expo
    assert f'atlasrl_actor_episode_outcomes_total{{outcome="acked",reason=""}} {float(n)}' in expo
    assert 'atlasrl_actor_episode_outcomes_total{outcome="refused",reason="stale"} 0.0' in expo
    assert set(spool_rows(tmp_path / "actor-7.sqlite").values()) == {("acked", "")}


def test_up_passes_the_spool_to_actors_and_the_cli_reads_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import atlasrl.actors.actor as actor_mod
    from atlasrl.cli.actor import actor_app
    from atlasrl.config import load_config
    from atlasrl.up.plan import build_plan
    from atlasrl.up.rundir import RunDir

    seen = []

    async def fake_run_actor(cfg, server_cfg, max_episodes=None):
        seen.append(cfg)

    monkeypatch.setattr(actor_mod, "run_actor", fake_run_actor)
    monkeypatch.setattr("atlasrl.cli.common.RoleOptions.apply", lambda self, role, host=None: None)
    for value, name, keep in (([], "spool", True), (["actor.spool=false"], "no-spool", False)):
        # actor.nice=0: the CLI runs in this process here, and an actor renices itself at start
        cfg = load_config(None, [f"run.run_dir={tmp_path / name}", "actor.nice=0", *value])
        rd = RunDir.create(cfg)
        argv = next(p for p in build_plan(cfg, rd, model_dir=str(tmp_path)).all() if p.role == "actor").argv
        r = CliRunner().invoke(actor_app, argv[argv.index("actor") + 1:])   # `atlasrl actor --config actor-0.yaml`
        assert r.exit_code == 0, r.output
        assert seen[-1].spool_dir == str(rd.root / "spool") and seen[-1].spool is keep and seen[-1].actor_id == "actor-0"
