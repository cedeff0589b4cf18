"""Client of the progress critic (CriticService): the actor, tests, the bench and `atlasrl debug critic` use it.

    async with CriticClient("127.0.0.1:50057") as critic:
        info = await critic.info()                         # backend, limits, pairwise
        scores = await critic.score("reach the goal", [frame0, frame1], timeout=2.0)
        scores[-1].progress, scores[-1].done_probability
        last = await critic.score(task, [first, current], last_only=True)   # one FrameScore: the last frame's
        delta = await critic.compare(task, frame_a, frame_b)

Frames are numpy uint8 (H, W, 3) arrays (encoded here with atlasrl.codec) or ready ``atlasrl.v1.Tensor``s
(sent as they are: an actor forwards the env server's zstd frame without decoding it), optionally with the
simulator state the oracle backend reads (``frame(t, oracle_state(obs, spec))``). Errors are
``grpc.RpcError`` with the server's status (INVALID_ARGUMENT naming the field, DEADLINE_EXCEEDED, UNAVAILABLE).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from atlasrl import codec
from atlasrl.rpc import ChannelConfig, make_channel
from atlasrl.v1 import critic_pb2, critic_pb2_grpc, env_pb2, tensor_pb2

FrameLike = np.ndarray | tensor_pb2.Tensor | critic_pb2.Frame


def frame(image: np.ndarray | tensor_pb2.Tensor, oracle: critic_pb2.OracleState | None = None) -> critic_pb2.Frame:
    t = image if isinstance(image, tensor_pb2.Tensor) else codec.encode(np.asarray(image, np.uint8), "frame")
    f = critic_pb2.Frame(image=t)
    if oracle is not None:
        f.oracle.CopyFrom(oracle)
    return f


def oracle_state(obs: env_pb2.Observation, spec: env_pb2.EnvSpec | None = None) -> critic_pb2.OracleState:
    """The privileged state of an env observation: success flag, agent cell, goal cell (kind goal, else target)."""
    o = critic_pb2.OracleState(success=bool(obs.success))
    if obs.HasField("agent"):
        o.agent.CopyFrom(obs.agent)
        o.has_agent = True
    goals = [e for e in obs.entities if e.kind == "goal"] or [e for e in obs.entities if e.kind == "target"]
    if goals:
        o.goal.CopyFrom(goals[0].cell)
        o.has_goal = True
    if spec is not None:
        o.grid_rows, o.grid_cols = spec.grid_rows, spec.grid_cols
    return o


def _as_frame(f: FrameLike) -> critic_pb2.Frame:
    return f if isinstance(f, critic_pb2.Frame) else frame(f)


class CriticClient:
    def __init__(self, target: str, channel_config: ChannelConfig | None = None):
        self.target = target
        self._channel = make_channel(target, channel_config)
        self._stub = critic_pb2_grpc.CriticServiceStub(self._channel)

    async def __aenter__(self) -> CriticClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def score(self, task: str, frames: Sequence[FrameLike], *, last_only: bool = False,
                    timeout: float | None = None, per_message: int = 0) -> list[critic_pb2.FrameScore]:
        """Scores of ``frames`` (one with ``last_only``). ``per_message`` > 0 splits the frames over that many
        per stream message (long episodes under the message size limit); 0 sends them in one."""
        pb = [_as_frame(f) for f in frames]
        step = per_message or max(1, len(pb))
        msgs = [critic_pb2.ScoreRequest(task=task if i == 0 else "", frames=pb[i:i + step], last_only=last_only)
                for i in range(0, max(1, len(pb)), step)]
        resp = await self._stub.Score(iter(msgs), timeout=timeout)
        return list(resp.scores)

    async def score_response(self, task: str, frames: Sequence[FrameLike], *, last_only: bool = False,
                             timeout: float | None = None) -> critic_pb2.ScoreResponse:
        """As score, with the batch figures (batch size, queue and model time)."""
        msg = critic_pb2.ScoreRequest(task=task, frames=[_as_frame(f) for f in frames], last_only=last_only)
        return await self._stub.Score(iter([msg]), timeout=timeout)

    async def compare(self, task: str, a: FrameLike, b: FrameLike, *, timeout: float | None = None) -> float:
        resp = await self._stub.Compare(critic_pb2.CompareRequest(task=task, a=_as_frame(a), b=_as_frame(b)),
                                        timeout=timeout)
        return float(resp.delta)

    async def info(self, *, timeout: float | None = None) -> critic_pb2.CriticInfo:
        return await self._stub.Info(critic_pb2.CriticInfoRequest(), timeout=timeout)
