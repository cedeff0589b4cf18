"""Wilson interval: known values, edge cases, coverage against the exact binomial."""
import math

import pytest

from atlasrl.actors.eval import wilson_interval


def test_known_values():
    lo, hi = wilson_interval(81, 100)  # textbook example, 95 %
    assert lo == pytest.approx(0.7222, abs=1e-4) and hi == pytest.approx(0.8749, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def binom_pmf(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


@pytest.mark.parametrize("n", [20, 50])
def test_coverage_close_to_nominal(n):
    # Exact coverage over the binomial for several p: Wilson stays near 95 %.
    for p in (0.1, 0.3, 0.5, 0.9):
        cover = sum(binom_pmf(k, n, p) for k in range(n + 1) if wilson_interval(k, n)[0] <= p <= wilson_interval(k, n)[1])
        assert 0.90 <= cover <= 0.99, (p, cover)


def test_wider_for_higher_confidence_and_rejects_bad_input():
    lo90, hi90 = wilson_interval(30, 60, 0.90)
    lo99, hi99 = wilson_interval(30, 60, 0.99)
    assert lo99 < lo90 and hi99 > hi90 and math.isclose((lo90 + hi90) / 2, 0.5)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(1, 10, 1.5)
