"""The one retry policy (atlasrl.rpc.retry): capped exponential backoff with bounded jitter, reset on success."""
import grpc
import pytest

from atlasrl.rpc.retry import Backoff


def test_delays_double_up_to_the_cap_with_bounded_jitter_and_reset():
    b = Backoff(0.1, 2.0)
    delays = [b.next_delay() for _ in range(8)]
    for n, d in enumerate(delays):
        base = min(0.1 * 2**n, 2.0)
        assert base <= d <= min(base + 0.1, 2.0) + 1e-9, (n, d)
    assert delays[-1] <= 2.0 and b.failures == 8
    b.reset()
    assert b.failures == 0 and b.next_delay() <= 0.2


def test_jitter_spreads_clients_that_failed_together():
    firsts = {round(Backoff(0.5, 5.0).next_delay(), 6) for _ in range(20)}
    assert len(firsts) > 10     # 20 actors that lost one server do not all come back at the same instant


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)


def test_retryable_codes():
    from atlasrl.rpc.retry import RETRYABLE

    assert grpc.StatusCode.UNAVAILABLE in RETRYABLE and grpc.StatusCode.PERMISSION_DENIED not in RETRYABLE
