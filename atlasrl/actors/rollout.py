"""The asyncio rollout loop: many env sessions, one batched generate call per turn.

    loop = RolloutLoop(cfg, policy, env_clients(cfg.envs), on_episode=sender.put, memory=hints, gate=gate, admit=gate.admit)
    await loop.run(max_episodes=100)          # or until loop.stop()

Lockstep batches (SEED RL style): every active env session contributes its
pending turn; the policy generates for all of them in one call; the actions
go to each env server in one Step request, all servers concurrently; finished
episodes are handed to ``on_episode`` (awaited: a full trajectory buffer
pauses generation) and their slots reset with the next seed of the schedule.
A slot that would start a new GRPO group asks ``admit`` first; refused, it
parks (sits out the batches) until admission opens, so the actor generates at
the pace the learner trains.
Between batches the gate may hold generation (stale weights, paused run) and
the policy swaps in new weights, so every turn is tagged with the version that
produced it.

If an env server fails, every episode in flight there is dropped (never
reported as success or failure), its seed goes back to the schedule so its
GRPO group completes, and the slot is reopened: on the same server once it
answers again, else on another live server.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from atlasrl.actors.config import ActorConfig
from atlasrl.actors.episode import EpisodeBuffer
from atlasrl.actors.groups import SeedSchedule
from atlasrl.actors.memory_hints import EpisodeAdvice, MemoryAdvisor
from atlasrl.actors.metrics import ActorMetrics
from atlasrl.actors.policy import Policy, TurnInput, TurnOutput
from atlasrl.actors.prompts import PastTurn, PromptBuilder
from atlasrl.clients.env import EnvClient, EnvStreamClosed
from atlasrl.rpc import RemoteError
from atlasrl.rpc.retry import Backoff
from atlasrl.v1 import env_pb2, trajectory_pb2

if TYPE_CHECKING:
    from atlasrl.actors.critic_reward import CriticJudge

log = logging.getLogger("atlasrl.actors.rollout")
PARKED_POLL_S = 0.02   # every slot parked: how often admission is asked again
EarlyReset = tuple[asyncio.Future, int]   # a slot's place in the reset batch _reset_early sent: (batch, index)
Partial = tuple[trajectory_pb2.TurnRecord, bytes]   # a turn's record before the env answers, and its state key


@dataclass
class Slot:
    """One env session the actor drives."""

    index: int
    link: EnvClient | None = None
    handle: int = 0
    builder: PromptBuilder | None = None
    episode: EpisodeBuffer | None = None
    history: list[PastTurn] = field(default_factory=list)
    advice: EpisodeAdvice = field(default_factory=EpisodeAdvice)
    broken: bool = True  # needs (re)opening
    parked: bool = False  # open, waiting for admission to start its next episode


class RolloutLoop:
    def __init__(
        self,
        cfg: ActorConfig,
        policy: Policy,
        links: list[EnvClient],
        *,
        seeds: SeedSchedule | None = None,
        on_episode: Callable[[trajectory_pb2.Episode, EpisodeBuffer], Awaitable[None]] | None = None,
        memory: MemoryAdvisor | None = None,
        gate: Callable[[], Awaitable[None]] | None = None,
        admit: Callable[[int], bool] | None = None,
        metrics: ActorMetrics | None = None,
        wants_bootstrap: Callable[[], bool] | None = None,
        critic: CriticJudge | None = None,
    ):
        """``wants_bootstrap``: whether the learner bootstraps cut episodes from a value (PPO; asked through its
        TrajectoryInfo): such episodes then carry the prompt of the state they were cut in (Episode.bootstrap)."""
        if not links:
            raise ValueError("at least one env server is needed")
        self.cfg = cfg
        self.policy = policy
        self.links = links
        self.seeds = seeds or SeedSchedule(cfg.actor_id, cfg.group_size, cfg.seed_start)
        self.on_episode = on_episode
        self.memory = memory
        self.gate = gate
        self.admit = admit
        self.wants_bootstrap = wants_bootstrap
        self.critic = critic   # reward.source=critic, training only (atlasrl/actors/critic_reward.py)
        self.m = metrics or ActorMetrics()
        self.slots = [Slot(i) for i in range(cfg.num_envs)]
        self.finished = 0
        self.dropped = 0
        self.env_steps = 0
        self.tokens = 0
        self._recent: deque[bool] = deque(maxlen=100)
        self._recent_returns: deque[float] = deque(maxlen=100)
        self._stop = asyncio.Event()
        self._backoff = Backoff(cfg.reconnect_backoff_s, max(8.0, cfg.reconnect_backoff_s))
        self._idle_s = cfg.reconnect_backoff_s   # wait before the next repair while no env server answers
        self._resets_one_by_one: set[str] = set()   # env servers that refused a ResetBatch (older than it)

    def stop(self) -> None:
        self._stop.set()

    # -- main loop -----------------------------------------------------------
    async def run(self, max_episodes: int | None = None) -> None:
        try:
            while not self._stop.is_set() and (max_episodes is None or self.finished < max_episodes):
                await self._repair_slots()
                await self._unpark()
                active = [s for s in self.slots if s.episode is not None and not s.broken]
                if not active:
                    if any(s.parked for s in self.slots):   # paced: wait for the learner to train
                        if self.gate is not None and not await self._pass_gate():
                            break
                        await asyncio.sleep(PARKED_POLL_S)
                        continue
                    if self.seeds.exhausted and all(s.episode is None for s in self.slots if not s.broken):
                        return
                    await asyncio.sleep(self._idle_s)
                    continue
                if self.gate is not None and not await self._pass_gate():
                    break
                await self.policy.maybe_update()
                await self._turn(active)
        finally:
            await asyncio.gather(*(link.aclose() for link in self.links), return_exceptions=True)

    async def _pass_gate(self) -> bool:
        """Wait for the gate; False when stop() came first (a held gate must not block shutdown)."""
        gate = asyncio.ensure_future(self.gate())
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({gate, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not gate.done():
            gate.cancel()
            return False
        gate.result()  # re-raise a failing gate
        return not self._stop.is_set()

    async def _turn(self, active: list[Slot]) -> None:
        inputs = [self._turn_input(s) for s in active]
        t0 = time.perf_counter()
        outs = await self.policy.generate(inputs)
        self.m.gen_latency.observe(time.perf_counter() - t0)
        self.m.batch_size.observe(len(inputs))
        by_link: dict[int, list[tuple[Slot, str]]] = {}
        stepped = {}
        for slot, out in zip(active, outs):
            if out.action_text is None:  # invalid output: a no-op turn, the env is not stepped
                if slot.builder.spec.action_kind == env_pb2.ACTION_KIND_CONTINUOUS:
                    # ... except a robot's: it does not pause while the model writes nonsense. "" is the env's
                    # hold for one step (action_is_valid=False, its invalid_action_penalty), so time and truncation go on.
                    by_link.setdefault(id(slot.link), []).append((slot, ""))
                    continue
                stepped[slot.index] = _noop_observation(slot.episode.last_obs)
                continue
            action = out.action_text if out.action_values is None else out.action_values   # numbers: Action.values
            by_link.setdefault(id(slot.link), []).append((slot, action))
        steps = asyncio.gather(*(self._step_link(pairs) for pairs in by_link.values()))
        # While the Steps are on the wire this loop would only wait for the env servers: it builds what the turn
        # records need that the answers do not decide (tokens, log-probs, the state's key), the bulk of their cost.
        await asyncio.sleep(0)   # the step tasks run to their first wait: the requests are sent
        try:
            partial = {s.index: (out.partial_record(), state_key(s.episode.last_obs)) for s, out in zip(active, outs)}
            tokens = sum(len(out.response_ids) for out in outs)   # counters once a turn, not once a session
            self.tokens += tokens
            self.m.tokens.inc(tokens)
            self.m.prompt_tokens.inc(sum(len(out.prompt_ids) for out in outs))
            results = await steps
        except BaseException:
            steps.cancel()
            raise
        for pairs, res in zip(by_link.values(), results):
            if isinstance(res, EnvStreamClosed):
                self._drop([s for s, _ in pairs], "env_server_down", res)
                continue
            for (slot, _), r in zip(pairs, res):
                if r.error is not None:  # this session broke; the others on the server are fine
                    self._drop([slot], "env_error", r.error)
                else:
                    stepped[slot.index] = r.observation.proto
        ok = [(s, out, stepped[s.index], partial[s.index]) for s, out in zip(active, outs) if s.index in stepped]
        # The resets of the episodes this turn ends go out now, one message per env server, and run there while
        # the turns are recorded below, instead of one more round trip after it. With a critic an episode's end
        # is known only from its verdict, so resets wait as before.
        early = self._reset_early([s for s, _, obs, _ in ok if s.episode.ends_with(obs)]) if self.critic is None else {}
        if early:
            await asyncio.sleep(0)   # the reset tasks run up to their first wait: the requests are on their way
        try:
            await self._record(ok, early)
        except BaseException:
            for task, _ in early.values():
                task.cancel()
            raise

    async def _record(self, ok: list[tuple[Slot, TurnOutput, env_pb2.Observation, Partial]],
                      early: dict[int, EarlyReset]) -> None:
        """Add the stepped turns to their episodes, hand over the finished episodes and start the next ones."""
        finished, restart = [], []
        verdicts = await self.critic.judge([(s.episode, o) for s, _, o, _ in ok]) if self.critic is not None else None
        for i, (slot, out, obs, (record, key)) in enumerate(ok):
            turn = out.complete_record(record, obs, self._shaping(slot, obs))
            turn.state_key = key
            if not turn.action_valid:
                self.m.invalid_actions.labels("format" if out.action_text is None else "env").inc()
            if verdicts is not None and not self.critic.apply(slot.episode, turn, obs, verdicts[i]):
                self._drop_unjudged(slot)   # fallback drop_episode: never trained on a missing reward
                restart.append(slot)
                continue
            slot.episode.add_turn(turn, obs)
            slot.history.append(PastTurn(observation=_prev_text(slot), frame=_prev_frame(slot), response=out.text))
            self.env_steps += 1
            if slot.episode.done:
                finished.append(slot)
        self.m.env_steps.inc(len(ok) - len(restart))
        await self._bootstrap([s for s in finished if s.episode is not None and s.episode.cut])
        for slot in finished:
            await self._finish(slot)
        await asyncio.gather(*(self._start_episode(s, early.get(s.index)) for s in finished + restart))

    def _reset_early(self, ending: list[Slot]) -> dict[int, EarlyReset]:
        """Draw the next seeds of the slots whose episodes end this turn, in slot order as _start_episode would,
        and send their resets: one ResetBatch per env server. Admission counts the ending episodes as in flight:
        they are not handed over yet (_finish), and the backlog it bounds counts an episode once, wherever it is."""
        in_flight = self.in_flight
        early: dict[int, EarlyReset] = {}
        by_link: dict[int, list[tuple[Slot, str, int]]] = {}
        for slot in ending:
            drawn = self._draw_seed(slot, in_flight)
            if drawn is not None:
                by_link.setdefault(id(slot.link), []).append((slot, *drawn))
            else:   # parked, or no seed left: nothing to start, and not to be drawn again this turn
                nothing = asyncio.get_running_loop().create_future()
                nothing.set_result([None])
                early[slot.index] = (nothing, 0)
        for batch in by_link.values():
            task = asyncio.ensure_future(self._reset_batch(batch))
            for i, (slot, _, _) in enumerate(batch):
                early[slot.index] = (task, i)
        return early

    async def _reset_batch(self, batch: list[tuple[Slot, str, int]]) -> list[tuple[str, int, env_pb2.Observation] | None]:
        """Reset the slots of one env server in one message; None for a slot whose reset failed (its seed goes
        back to the schedule and the slot is reopened, as after a failed step)."""
        link = batch[0][0].link
        if link.target in self._resets_one_by_one:
            return await self._reset_each(batch)
        try:
            results = await link.reset_many([(slot.handle, seed) for slot, _, seed in batch])
        except EnvStreamClosed as e:
            for _, group_id, seed in batch:
                self.seeds.give_back(group_id, seed)
            self._mark_broken([slot for slot, _, _ in batch], e)
            return [None] * len(batch)
        except RemoteError as e:   # refused as a whole: an env server older than ResetBatch. One Reset each.
            log.warning("env server %s refused a ResetBatch (%s); sending it one Reset per episode", link.target, e)
            self._resets_one_by_one.add(link.target)
            return await self._reset_each(batch)
        out: list[tuple[str, int, env_pb2.Observation] | None] = []
        for (slot, group_id, seed), r in zip(batch, results):
            if r.error is not None:
                self.seeds.give_back(group_id, seed)
                self._mark_broken([slot], r.error)
                out.append(None)
            else:
                out.append((group_id, seed, r.observation.proto))
        return out

    async def _reset_each(self, batch: list[tuple[Slot, str, int]]) -> list[tuple[str, int, env_pb2.Observation] | None]:
        """One Reset per slot of ``batch``, for an env server that does not take ResetBatch."""
        return list(await asyncio.gather(*(self._reset(slot, group_id, seed) for slot, group_id, seed in batch)))

    async def _bootstrap(self, cut: list[Slot]) -> None:
        """Episodes cut by a time limit or the turn cap keep the prompt of their last state, so PPO's learner can
        read V(s_T) there (one engine call for all of them, one token each: only the prompt matters)."""
        if not cut or self.wants_bootstrap is None or not self.wants_bootstrap():
            return
        outs = await self.policy.generate([self._turn_input(s) for s in cut], max_tokens=1)
        for slot, out in zip(cut, outs):
            slot.episode.bootstrap = out.to_bootstrap_record()

    def _turn_input(self, slot: Slot) -> TurnInput:
        obs = slot.episode.last_obs
        frame = obs.images[0] if obs.images else None
        prompt = slot.builder.build(slot.history, slot.advice.text(obs), frame, slot.advice.hints(obs))
        spec = slot.builder.spec
        return TurnInput(prompt=prompt, choices=list(spec.valid_actions), max_actions=max(1, spec.max_actions_per_turn))

    async def _step_link(self, pairs: list[tuple[Slot, str]]):
        link = pairs[0][0].link
        try:
            return await link.step([(s.handle, text) for s, text in pairs])
        except EnvStreamClosed as e:
            return e

    def _shaping(self, slot: Slot, next_obs: env_pb2.Observation) -> float:
        if not self.cfg.memory_shaping:
            return 0.0
        ep = slot.episode
        cut = len(ep.turns) + 1 >= ep.max_turns   # this turn hits the turn cap: the episode ends here
        return slot.advice.shape(ep.last_obs, next_obs, last=cut) * self.cfg.shaping_scale

    # -- episodes ------------------------------------------------------------
    async def _finish(self, slot: Slot) -> None:
        ep = slot.episode
        slot.episode = None
        self.finished += 1
        self._recent.append(ep.success)
        self._recent_returns.append(ep.total_reward)
        self.m.episodes.labels("success" if ep.success else "failure").inc()
        self.m.success_rate.set(sum(self._recent) / len(self._recent))
        if self.critic is not None:
            self.critic.finished(ep)
        if self.memory is not None and self.cfg.memory_ingest:
            self.memory.ingest(ep)
        if self.on_episode is not None:
            await self.on_episode(ep.to_proto(self.cfg.actor_id), ep)

    @property
    def in_flight(self) -> int:
        return sum(1 for s in self.slots if s.episode is not None)

    async def _unpark(self) -> None:
        for slot in self.slots:
            if slot.parked and not slot.broken:
                await self._start_episode(slot)
                if slot.parked:
                    return       # still refused: the rest wait too (admission is in arrival order)

    async def _start_episode(self, slot: Slot, reset: EarlyReset | None = None) -> None:
        """The slot's next episode; ``reset``: what ``_reset_early`` already drew and sent for it, if it did."""
        if reset is None:
            drawn = self._draw_seed(slot, self.in_flight)
            if drawn is None:
                return
            got = await self._reset(slot, *drawn)
        else:
            batch, i = reset
            got = (await batch)[i]
        if got is None:
            return
        group_id, seed, obs = got
        slot.history = []
        slot.episode = EpisodeBuffer(
            episode_id=str(uuid.uuid4()), group_id=group_id, seed=seed, group_size=self.seeds.group_size,
            spec=slot.builder.spec, first_obs=obs, max_turns=self.cfg.max_turns,
        )
        slot.advice = (await self.memory.episode_start(slot.builder.spec, obs, group_id) if self.memory is not None
                       else EpisodeAdvice())

    def _draw_seed(self, slot: Slot, in_flight: int) -> tuple[str, int] | None:
        """(group id, seed) of the slot's next episode; None when admission parks the slot or seeds ran out."""
        slot.parked = False
        if self.admit is not None and self.seeds.starts_group and not self.admit(in_flight):
            slot.parked = True
            return None
        return self.seeds.next()

    async def _reset(self, slot: Slot, group_id: str, seed: int) -> tuple[str, int, env_pb2.Observation] | None:
        try:
            return group_id, seed, (await slot.link.reset(slot.handle, seed)).proto
        except EnvStreamClosed as e:
            self.seeds.give_back(group_id, seed)
            self._mark_broken([slot], e)
            return None

    def _drop(self, slots: list[Slot], reason: str, err: Exception) -> None:
        for slot in slots:
            if slot.episode is not None:
                self.dropped += 1
                self.m.dropped.labels(reason).inc()
                self.seeds.give_back(slot.episode.group_id, slot.episode.seed)
                slot.episode = None
        self._mark_broken(slots, err)

    def _drop_unjudged(self, slot: Slot) -> None:
        """The critic missed its deadline and the fallback is drop_episode: the session stays open, the seed is
        played again."""
        self.dropped += 1
        self.m.dropped.labels("critic_unavailable").inc()
        self.seeds.give_back(slot.episode.group_id, slot.episode.seed)
        slot.episode = None

    def _mark_broken(self, slots: list[Slot], err: Exception) -> None:
        for slot in slots:
            slot.broken = True
        if slots and slots[0].link is not None:
            log.warning("env server %s failed (%s); %d sessions will be reopened", slots[0].link.target, err, len(slots))

    # -- (re)opening sessions -----------------------------------------------
    async def _repair_slots(self) -> None:
        broken = [s for s in self.slots if s.broken]
        if not broken:
            return
        # Drop every other episode on a server that just failed for one slot.
        for slot in broken:
            if slot.link is not None and slot.link.down:
                self._drop([s for s in self.slots if s.link is slot.link and not s.broken], "env_server_down",
                           EnvStreamClosed(grpc.StatusCode.UNAVAILABLE.value[0], f"env server {slot.link.target} is down"))
        broken = [s for s in self.slots if s.broken]
        live = await self._live_links()
        if not live:
            self._idle_s = self._backoff.next_delay()
            return
        self._backoff.reset()
        self._idle_s = self.cfg.reconnect_backoff_s
        for slot in broken:
            preferred = self.links[slot.index % len(self.links)]
            link = preferred if preferred in live else live[slot.index % len(live)]
            try:
                slot.handle, spec = await link.open(self.cfg.env_id, self.cfg.env_config, seed=None)
            except EnvStreamClosed as e:
                self._mark_broken([slot], e)
                continue
            if slot.link is not None:
                self.m.env_reconnects.inc()
            slot.link, slot.broken = link, False
            slot.builder = PromptBuilder(
                spec, action_mode=self.cfg.action_mode, context_turns=self.cfg.context_turns,
                context_images=self.cfg.context_images, use_image=self.cfg.use_image,
                system_prompt=self.cfg.system_prompt, bare=self.cfg.bare_prompt,
                frame_after_text=self.cfg.frame_after_text,
            )
            await self._start_episode(slot)

    async def _live_links(self) -> list[EnvClient]:
        live = []
        for link in self.links:
            if link.down:
                try:
                    await link.reconnect()
                except EnvStreamClosed:
                    continue
            live.append(link)
        return live

    @property
    def return_mean(self) -> float:
        """Mean return (env + format + shaping) of the last 100 finished episodes."""
        return sum(self._recent_returns) / len(self._recent_returns) if self._recent_returns else float("nan")

    @property
    def success_rate(self) -> float:
        return sum(self._recent) / len(self._recent) if self._recent else 0.0


def env_clients(addresses: Iterable[str]) -> list[EnvClient]:
    """The actor's env clients, one per server: frames are not decoded (prompts and episodes carry them as received)."""
    return [EnvClient(a, decode_images=False) for a in addresses]


def state_key(obs: env_pb2.Observation) -> bytes:
    """Digest of what the policy sees of an env state (text, agent cell, frames): GiGPO's anchor-state key."""
    h = hashlib.blake2b(obs.text.encode(), digest_size=16)
    if obs.HasField("agent"):
        h.update(b"@%d,%d" % (obs.agent.row, obs.agent.col))
    for img in obs.images:
        h.update(img.data)
    return h.digest()


def _noop_observation(last: env_pb2.Observation) -> env_pb2.Observation:
    """What a no-op turn leaves: the same state, no env reward, the action marked invalid."""
    obs = env_pb2.Observation()
    obs.CopyFrom(last)
    obs.reward = 0.0
    obs.info.update({"action_is_valid": False})
    return obs


def _prev_text(slot: Slot) -> str:
    eps = slot.episode
    prev = eps.observations[-2] if len(eps.observations) >= 2 else eps.first_obs
    return prev.text


def _prev_frame(slot: Slot):
    eps = slot.episode
    prev = eps.observations[-2] if len(eps.observations) >= 2 else eps.first_obs
    return prev.images[0] if prev.images else None
