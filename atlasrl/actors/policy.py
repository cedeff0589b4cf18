"""Policy: the actor's side of an engine — prompts in, tagged turns out, weights swapped between batches.

    policy = Policy(engine, cfg, weights=WeightSubscriber(learner_addr, subscriber_id=cfg.actor_id))
    await policy.start()                      # starts receiving weight versions in the background
    outs = await policy.generate([TurnInput(prompt, choices)])
    record = outs[0].to_turn_record(next_obs, shaping)    # atlasrl.v1.TurnRecord
    await policy.maybe_update()               # between batches: swap in the newest received version

Weights arrive in the background and only the newest version is kept; the swap
happens in ``maybe_update``, which the rollout loop calls between generate
calls, so a batch is never generated with mixed weights and every turn carries
the version that produced it (``Generation.version``). The swap runs as its own
task: a caller that stops waiting (the staleness gate polls with a timeout)
neither loses the version nor cancels its copy still queued for a worker thread.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from atlasrl import codec
from atlasrl.actors.config import ActorConfig
from atlasrl.actors.engines.base import Engine, Generation, GenerationRequest, SamplingParams
from atlasrl.actors.metrics import ActorMetrics
from atlasrl.actors.parsing import FREE_STOP, parse_choice, parse_free
from atlasrl.actors.prompts import Prompt
from atlasrl.v1 import env_pb2, tensor_pb2, trajectory_pb2

log = logging.getLogger("atlasrl.actors.policy")


@dataclass
class TurnInput:
    prompt: Prompt              # images are atlasrl.v1.Tensor (as the env sent them)
    choices: list[str] = field(default_factory=list)   # the env's valid actions (empty for continuous envs)
    max_actions: int = 1        # free mode: actions allowed in one answer


@dataclass
class TurnOutput:
    gen: Generation
    action_text: str | None     # what goes to the env; None = invalid output, a no-op turn
    format_reward: float
    action_mode: int            # trajectory_pb2.ActionMode
    images: list[tensor_pb2.Tensor]
    action_values: Any = None   # ACTION_MODE_FLOW: the numeric chunk (H, D) sent to the env as Action.values

    @property
    def prompt_ids(self) -> list[int]:
        return self.gen.prompt_ids

    @property
    def response_ids(self) -> list[int]:
        return self.gen.token_ids

    @property
    def text(self) -> str:
        return self.gen.text

    def to_turn_record(self, next_obs: env_pb2.Observation, shaping: float = 0.0) -> trajectory_pb2.TurnRecord:
        return self.complete_record(self.partial_record(), next_obs, shaping)

    def complete_record(self, rec: trajectory_pb2.TurnRecord, next_obs: env_pb2.Observation,
                        shaping: float = 0.0) -> trajectory_pb2.TurnRecord:
        """``partial_record``'s proto with what the env's answer decides: rewards and whether the action was valid."""
        env_reward = float(next_obs.reward)
        valid = next_obs.info.fields.get("action_is_valid") if next_obs.HasField("info") else None
        rec.reward = env_reward + self.format_reward + shaping
        rec.env_reward = env_reward
        rec.shaping_reward = shaping
        rec.action_valid = self.action_text is not None and (valid is None or bool(valid.bool_value))
        return rec

    def partial_record(self) -> trajectory_pb2.TurnRecord:
        """The TurnRecord's fields known before the env answers (tokens, log-probs, version, images): the rollout
        loop builds them while its Step is on the wire (the bulk of a record's cost)."""
        g = self.gen
        rec = trajectory_pb2.TurnRecord(
            prompt_ids=g.prompt_ids, response_ids=g.token_ids, logprobs=g.logprobs, loss_mask=[1] * len(g.token_ids),
            format_reward=self.format_reward, policy_version=g.version, images=self.images, action_mode=self.action_mode,
            temperature=g.temperature, action_text=self.action_text or "",
        )
        for ids in g.choice_token_ids or []:
            rec.choices.add(ids=ids)
        if self.action_mode == trajectory_pb2.ACTION_MODE_FLOW:   # the SDE path the learner rescores
            from atlasrl.policies.action_head.learning import action_chunk

            rec.chunk.CopyFrom(action_chunk(g.extra))
            rec.loss_mask[:] = [1] * len(g.logprobs)
        if len(set(g.token_versions)) > 1:   # new weights mid-turn (interrupt): each token's own version
            rec.token_versions.extend(g.token_versions)
        return rec

    def to_bootstrap_record(self) -> trajectory_pb2.TurnRecord:
        """This generation as Episode.bootstrap: the prompt of the state an episode was cut in, trained on by no
        loss (loss_mask 0, reward 0); the learner reads only the value of its prompt."""
        g = self.gen
        rec = trajectory_pb2.TurnRecord(
            prompt_ids=g.prompt_ids, response_ids=g.token_ids, logprobs=g.logprobs, loss_mask=[0] * len(g.token_ids),
            policy_version=g.version, images=self.images, action_mode=self.action_mode, temperature=g.temperature,
        )
        for ids in g.choice_token_ids or []:
            rec.choices.add(ids=ids)
        return rec


class Policy:
    def __init__(self, engine: Engine, cfg: ActorConfig, *, weights=None, metrics: ActorMetrics | None = None):
        self.engine = engine
        self.cfg = cfg
        self.weights = weights          # atlasrl.clients.weights.WeightSubscriber or None
        self.m = metrics or ActorMetrics()
        stop = (FREE_STOP,) if cfg.action_mode == "free" else ()
        self.params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, stop=stop)
        self._latest = None             # newest WeightVersion received, not yet applied
        self._arrived = asyncio.Event()
        self._swap: asyncio.Task | None = None   # the swap in progress (outlives a cancelled caller)
        self._task: asyncio.Task | None = None
        self.m.policy_version.set(engine.version)

    @property
    def version(self) -> int:
        return self.engine.version

    async def start(self) -> None:
        if self.weights is not None and self._task is None:
            self._task = asyncio.create_task(self._receive_weights(), name="weights")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing: whatever the cancelled task ended with is not our error
                pass
        if self._swapping:   # let a copy in progress finish before the engine goes
            await asyncio.gather(self._swap, return_exceptions=True)

    async def _receive_weights(self) -> None:
        """Keep the newest verified version. A refused one (corrupt, out of order) never arrives here: the
        subscriber counts it and resyncs, and the engine keeps acting with its last good version."""
        try:
            async for wv in self.weights.versions():
                if self.cfg.weight_swap == "interrupt" and hasattr(self.engine, "stage_weights"):
                    await self._stage(wv)   # loaded between decode steps, without waiting for the turn
                elif wv.version > self.engine.version or wv.lineage_reset:
                    self._latest = wv
                    self._arrived.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("weight subscription ended; acting on with version %d", self.engine.version)
            raise

    async def wait_for_version_above(self, version: int) -> None:
        """Block until a version newer than ``version`` is loaded (the staleness gate)."""
        while self.engine.version <= version:
            if self._latest is not None or self._swapping:
                await self.maybe_update()
                continue
            self._arrived.clear()
            await self._arrived.wait()

    @property
    def _swapping(self) -> bool:
        return self._swap is not None and not self._swap.done()

    async def maybe_update(self) -> bool:
        """Swap in the newest received version, if any; True when weights changed.

        Cancelling the caller does not cancel the swap: a cancelled ``to_thread``
        whose work item had not reached a thread yet would drop it, and the
        subscriber never resends a version it delivered, so the actor would wait
        for weights forever."""
        if not self._swapping:
            wv, self._latest = self._latest, None
            if wv is None or (wv.version <= self.engine.version and not wv.lineage_reset):
                return False
            self._swap = asyncio.create_task(self._apply(wv), name=f"weights-v{wv.version}")
            self._swap.add_done_callback(lambda t: t.cancelled() or t.exception())  # logged in _apply
        return await asyncio.shield(self._swap)

    async def _apply(self, wv) -> bool:
        try:
            await asyncio.to_thread(self.engine.update_weights, wv.version, wv.to_torch())
        except Exception:
            log.exception("loading weight version %d failed", wv.version)
            raise
        self.m.weight_updates.inc()
        self.m.policy_version.set(wv.version)
        log.info("weights updated to version %d", wv.version)
        return True

    async def _stage(self, wv) -> None:
        """Interrupt mode: hand the version to the engine now (it loads it at once when idle, else between two
        decode steps of the call in flight: atlasrl/actors/engines/transformers_engine.py)."""
        if wv.version <= self.engine.version and not wv.lineage_reset:
            return
        try:
            await asyncio.to_thread(self.engine.stage_weights, wv.version, wv.to_torch())
        except ValueError:
            log.exception("weight version %d does not fit the engine's model", wv.version)
            raise
        self.m.weight_updates.inc()
        self.m.policy_version.set(wv.version)
        self._arrived.set()

    async def generate(self, inputs: list[TurnInput], max_tokens: int | None = None) -> list[TurnOutput]:
        """One engine call for all ``inputs``; ``max_tokens`` caps this call's responses (a bootstrap needs one)."""
        choice = self.cfg.action_mode == "choice"
        params = self.params if max_tokens is None else dataclasses.replace(self.params, max_tokens=max_tokens)
        reqs = [
            GenerationRequest(
                messages=i.prompt.messages,
                images=[codec.decode(t) for t in i.prompt.images],
                choices=i.choices if choice else None,
            )
            for i in inputs
        ]
        gens = await self.engine.agenerate(reqs, params)
        return [self._output(i, g) for i, g in zip(inputs, gens)]

    def _output(self, inp: TurnInput, g: Generation) -> TurnOutput:
        if "chunk" in g.extra:   # an action-head engine: numbers for the env, and only the frame it read
            return TurnOutput(g, g.text, 0.0, trajectory_pb2.ACTION_MODE_FLOW, list(inp.prompt.images[-1:]),
                              action_values=g.extra["chunk"])
        if self.cfg.action_mode == "choice":
            parsed = parse_choice(g.choice_index, inp.choices)
            mode = trajectory_pb2.ACTION_MODE_CHOICE
        else:
            parsed = parse_free(g.text, inp.choices or None, max_actions=inp.max_actions)
            mode = trajectory_pb2.ACTION_MODE_FREE
        return TurnOutput(g, parsed.action, parsed.format_reward, mode, list(inp.prompt.images))
