"""One retry policy for every atlasrl client: capped exponential backoff with jitter (tenacity's wait strategy).

    backoff = Backoff(initial_s=0.1, max_s=5.0)
    while True:
        try:
            ...one attempt (a unary call, or a stream that runs until it breaks)...
            backoff.reset()                      # it worked: the next failure starts small again
        except grpc.aio.AioRpcError as e:
            if not retryable(e):
                raise
            await backoff.sleep()               # 0.1, ~0.2, ~0.4 ... up to 5 s, each plus up to `initial_s` jitter

Every loop that waits and tries again after a failure (coordinator calls, trajectory pushes, the weight
stream, memory ingest, env-server reconnects) uses this one class, so they share one shape of backoff
(tenacity's ``wait_exponential_jitter``: ``initial * 2**n`` capped at ``max``, plus uniform jitter so
that many actors that lost the same server do not reconnect in lockstep) and differ only in their caps.
Why not tenacity's ``AsyncRetrying`` around each call: these loops are long-lived (a stream that runs for
hours, then breaks) and reset after every success; a retry decorator would rebuild its state per call.
"""
from __future__ import annotations

import asyncio

import grpc
import tenacity

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})
"""Codes that say "not now" (server restarting, connection cut, overloaded), not "never"."""


def retryable(e: grpc.aio.AioRpcError) -> bool:
    return e.code() in RETRYABLE


class Backoff:
    def __init__(self, initial_s: float = 0.1, max_s: float = 5.0, *, jitter_s: float | None = None):
        if not 0 < initial_s <= max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        self.initial_s, self.max_s = initial_s, max_s
        self._wait = tenacity.wait_exponential_jitter(initial=initial_s, max=max_s, exp_base=2,
                                                      jitter=initial_s if jitter_s is None else jitter_s)
        self._state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
        self.failures = 0
        """Failures since the last reset."""

    def next_delay(self) -> float:
        """Count a failure; the seconds to wait before the next try."""
        self.failures += 1
        self._state.attempt_number = self.failures
        return min(self._wait(self._state), self.max_s)

    async def sleep(self) -> float:
        """Count a failure and wait; returns the delay waited."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.failures = 0
