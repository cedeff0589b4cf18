"""The text codec for continuous actions: pure numpy, always runs (no simulator needed)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from atlasrl.action_codec import ActionCodec, TemporalEnsemble

pytestmark = pytest.mark.maniskill

LOW = np.array([-1, -1, -1, -0.5, -0.5, -0.5, -1.0])
HIGH = np.array([1, 1, 1, 0.5, 0.5, 0.5, 1.0])
CODEC = ActionCodec(LOW, HIGH, max_steps=4)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, (3, 7), elements=st.floats(-1, 1)))
def test_round_trip_within_quantization_error(unit):
    actions = LOW + (unit + 1) / 2 * (HIGH - LOW)
    dec = CODEC.decode(CODEC.encode(actions))
    assert dec.valid and dec.reason == ""
    assert dec.actions.shape == (3, 7) and dec.actions.dtype == np.float32
    assert np.all(np.abs(dec.actions - actions) <= CODEC.max_error + 1e-6)


def test_bounds_map_to_ends_and_out_of_bounds_clip():
    assert CODEC.encode(LOW) == " ".join(["0"] * 7)
    assert CODEC.encode(HIGH) == " ".join(["1000"] * 7)
    assert CODEC.encode((LOW + HIGH) / 2) == " ".join(["500"] * 7)
    assert CODEC.encode(HIGH * 5) == CODEC.encode(HIGH)
    np.testing.assert_allclose(CODEC.decode(" ".join(["0"] * 7)).actions[0], LOW, atol=1e-6)
    np.testing.assert_allclose(CODEC.decode(" ".join(["1000"] * 7)).actions[0], HIGH, atol=1e-6)


def test_chunking_is_step_major_and_limited():
    chunk = np.stack([LOW, HIGH])
    text = CODEC.encode(chunk)
    assert text.split() == ["0"] * 7 + ["1000"] * 7
    np.testing.assert_allclose(CODEC.decode(text).actions, chunk, atol=1e-6)
    with pytest.raises(ValueError, match=r"1..4"):
        CODEC.encode(np.zeros((5, 7)))
    five_steps = CODEC.decode(" ".join(["500"] * 35))
    assert not five_steps.valid and "got 35 integers" in five_steps.reason and "1..4 steps" in five_steps.reason


def test_tolerates_prose_around_the_numbers_and_commas():
    for text in ["Action: 500 500 500 500 500 500 1000.", "[500, 500, 500, 500, 500, 500, 1000]",
                 "I will move.\n500 500 500 500 500 500 1000\nDone"]:
        dec = CODEC.decode(text)
        assert dec.valid, (text, dec.reason)
        assert dec.integers == [500] * 6 + [1000]


@pytest.mark.parametrize("text, reason", [
    ("", "no integers found; expected 7, 14, 21 or 28 integers"),
    ("move the arm left", "no integers found"),
    ("500 500 500", "got 3 integers; expected 7, 14, 21 or 28"),
    ("500 500 500 500 500 500 500 500", "got 8 integers"),
    ("500 500 500 up 500 500 500 500", "unexpected token 'up' between the integers"),
    ("500 500 500 500 500 500 500.5", "'500.5' is not an integer"),
    ("500 500 500 500 500 1001 500", "integer 1001 at position 5 (step 0, dim 5) is outside 0..1000"),
    ("500 500 500 500 500 500 -3", "integer -3 at position 6"),
    (None, "action must be text, got NoneType"),
    (b"500", "action must be text, got bytes"),
])
def test_malformed_text_gives_reason_and_hold_fallback(text, reason):
    dec = CODEC.decode(text)
    assert not dec.valid
    assert reason in dec.reason
    np.testing.assert_array_equal(dec.actions, np.zeros((1, 7), np.float32))
    hold = np.arange(7, dtype=np.float32) / 10
    np.testing.assert_array_equal(CODEC.decode(text, hold=hold).actions, hold[None])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_never_raises_on_arbitrary_text(text):
    dec = CODEC.decode(text)
    assert dec.actions.ndim == 2 and dec.actions.shape[1] == 7
    assert dec.valid or dec.reason


def test_describe_names_dims_and_bounds():
    fmt = ActionCodec([-1, -1], [1, 1], max_steps=2).describe(["dx", "gripper"])
    assert "2 space-separated integers in 0..1000" in fmt and "1 to 2 steps" in fmt
    assert "dx: 0 = -1, 500 = 0, 1000 = 1" in fmt and "Example (every dimension mid-range): 500 500" in fmt


def test_sample_text_is_valid():
    rng = np.random.default_rng(0)
    assert all(CODEC.decode(CODEC.sample_text(rng, steps=s)).valid for s in (1, 2, 4))


def test_bad_construction():
    with pytest.raises(ValueError, match="high > low"):
        ActionCodec([0, 1], [1, 1])
    with pytest.raises(ValueError, match="equal length"):
        ActionCodec([0], [1, 1])
    with pytest.raises(ValueError, match="hold action has 3 dims"):
        CODEC.decode("x", hold=np.zeros(3))


def test_temporal_ensemble_averages_aligned_predictions():
    ens = TemporalEnsemble(horizon=3, dim=1)
    # Chunk predicted at step t holds values 10*t + k for steps t+k.
    outs = [ens.step(np.array([[10 * t + k] for k in range(3)]))[0] for t in range(5)]
    assert outs[0] == 0                                   # only chunk 0: its step-0 prediction
    assert outs[1] == pytest.approx((1 + 10) / 2)         # chunk 0 [1], chunk 1 [0]
    assert outs[2] == pytest.approx((2 + 11 + 20) / 3)
    assert outs[4] == pytest.approx((22 + 31 + 40) / 3)   # only the last 3 chunks count
    ens.reset()
    assert ens.step([[7.0]])[0] == 7.0


def test_temporal_ensemble_decay_favours_older_predictions_and_short_chunks():
    ens = TemporalEnsemble(horizon=2, dim=1, decay=1.0)
    ens.step([[0.0], [0.0]])
    w = np.exp(-np.arange(2.0))
    assert ens.step([[1.0], [1.0]])[0] == pytest.approx(w[1] / w.sum())
    short = TemporalEnsemble(horizon=3, dim=2)
    short.step([[1, 1]])                                  # a one-step chunk says nothing about t=1
    np.testing.assert_allclose(short.step([[3, 5]]), [3, 5])


def test_temporal_ensemble_with_a_stride_averages_the_chunks_covering_each_step():
    """Decisions every k=2 steps with H=4: steps t, t+1 average the new chunk with the previous chunk's tail."""
    ens = TemporalEnsemble(horizon=4, dim=1)
    ens.add([[0.0], [1.0], [2.0], [3.0]])
    assert [ens.next()[0] for _ in range(2)] == [0.0, 1.0]          # only the first chunk so far
    ens.add([[10.0], [11.0], [12.0], [13.0]])
    assert [ens.next()[0] for _ in range(2)] == [pytest.approx(6.0), pytest.approx(7.0)]   # (2+10)/2, (3+11)/2
    assert ens.next()[0] == 12.0 and ens.next()[0] == 13.0           # the first chunk ended at step 3
    assert ens.next() is None and ens.t == 6                          # nothing predicts step 6: no advance


def test_temporal_ensemble_skip_keeps_chunks_aligned_and_negative_decay_favours_the_newest():
    ens = TemporalEnsemble(horizon=3, dim=1)
    ens.add([[0.0], [1.0], [2.0]])
    ens.next()
    ens.skip()                                                        # a held step (invalid text) at t=1
    assert ens.covered() and ens.next()[0] == 2.0                     # step 2 is still the chunk's row 2
    newest = TemporalEnsemble(horizon=2, dim=1, decay=-5.0)
    newest.step([[0.0], [0.0]])
    assert newest.step([[1.0], [1.0]])[0] > 0.99
    with pytest.raises(ValueError):
        TemporalEnsemble(horizon=0, dim=1)
