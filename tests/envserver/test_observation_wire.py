"""The env server's hand-written Observation bytes (convert.observation_bytes) equal protobuf's own message.

The reference below builds the Observation with protobuf's objects, as the server did before it wrote the
fields itself; hypothesis draws step outputs with every field at zero, negative, empty, unicode, nested and
non-finite values, and the two must parse to the same message, byte for byte apart from Struct map order.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasrl import codec
from atlasrl.envserver import registry
from atlasrl.envserver.base import Entity, StepOutput
from atlasrl.envserver.convert import jsonable, observation_bytes
from atlasrl.v1 import env_pb2


def reference(out: StepOutput, camera_names: list[str]) -> env_pb2.Observation:
    obs = env_pb2.Observation(text=out.text, reward=float(out.reward), terminated=bool(out.terminated),
                              truncated=bool(out.truncated), success=bool(out.success), step=int(out.step),
                              layout_key=out.layout_key)
    for i, image in enumerate(out.images):
        obs.images.append(codec.encode(image, name=camera_names[i] if i < len(camera_names) else f"camera{i}"))
    if out.info:
        obs.info.update(jsonable(out.info))
    if out.agent is not None:
        obs.agent.row, obs.agent.col = int(out.agent[0]), int(out.agent[1])
    for e in out.entities:
        obs.entities.add(kind=e.kind, cell=env_pb2.GridCoord(row=int(e.cell[0]), col=int(e.cell[1])),
                         position=[float(p) for p in e.position], name=e.name)
    return obs


int32 = st.integers(-(2**31), 2**31 - 1)
text = st.text(max_size=12)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=True, allow_infinity=True),
                   text, st.builds(np.int64, st.integers(-1000, 1000)), st.builds(np.float32, st.floats(-1e3, 1e3)),
                   st.builds(np.bool_, st.booleans()))
info_value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                                                          st.dictionaries(st.one_of(text, st.integers(0, 9)), inner, max_size=3)),
                          max_leaves=8)
entity = st.builds(Entity, kind=text, cell=st.tuples(int32, int32),
                   position=st.lists(st.floats(-10, 10, width=32), max_size=3).map(tuple), name=text)
image = st.one_of(st.builds(lambda v, n: np.full((n, n, 3), v, np.uint8), st.integers(0, 255), st.integers(1, 24)),
                  st.builds(lambda s: np.random.default_rng(s).integers(0, 256, (8, 8, 3), dtype=np.uint8), st.integers(0, 99)))
step_output = st.builds(
    StepOutput, images=st.lists(image, max_size=2), text=text,
    reward=st.one_of(st.just(0.0), st.just(-0.0), st.floats(allow_nan=False)), terminated=st.booleans(),
    truncated=st.booleans(), success=st.booleans(),
    info=st.dictionaries(st.one_of(text, st.integers(0, 9)), info_value, max_size=4),
    agent=st.one_of(st.none(), st.tuples(int32, int32)), entities=st.lists(entity, max_size=4),
    step=st.integers(0, 2**32 - 1), layout_key=text)


@settings(max_examples=300, deadline=None)
@given(out=step_output, cameras=st.lists(text, max_size=2))
def test_observation_bytes_parse_to_protobufs_own_message(out, cameras):
    data, raw, wire = observation_bytes(out, cameras)
    expected = reference(out, cameras)
    assert env_pb2.Observation.FromString(data) == expected  # non-finite info numbers are strings, as in jsonable
    assert raw == sum(np.asarray(i).nbytes for i in out.images) and wire == sum(len(t.data) for t in expected.images)
    if not out.info:  # without a Struct (map order) the bytes are protobuf's exactly
        assert data == expected.SerializeToString()


def test_a_real_games_steps_are_byte_equal():
    env = registry.make("frozenlake", {"size": "4"}, seed=3)
    outs = [env.text_reset(seed=3)] + [env.text_step(a) for a in ["Right", "Down", "Nowhere", "Left", "Up"]]
    for out in outs:
        assert env_pb2.Observation.FromString(observation_bytes(out, ["main"])[0]) == reference(out, ["main"])


def test_out_of_range_numbers_are_refused_like_protobuf():
    for bad in (StepOutput(images=[], text="", step=-1), StepOutput(images=[], text="", step=2**32),
                StepOutput(images=[], text="", agent=(2**31, 0))):
        with pytest.raises(ValueError):
            observation_bytes(bad)
        with pytest.raises(ValueError):
            reference(bad, [])


# --- the frame cache (EnvServerConfig.frame_cache_mb) --------------------------------------------------------------

GRID_CASES = [("frozenlake", {"size": "4"}), ("frozenlake", {"size": "4", "image_size": "112"}),
              ("frozenlake", {"size": "4", "position_marks": "true"}), ("frozenlake", {"size": "6", "hidden_holes": "true"}),
              ("sokoban", {"size": "6", "num_boxes": "1"}), ("sokoban", {"size": "6", "num_boxes": "1", "view": "egocentric"})]


def _random_play(env_id: str, config: dict[str, str], seed: int, steps: int) -> list[StepOutput]:
    env = registry.make(env_id, config, seed=seed)
    rng = np.random.default_rng(seed)
    outs = [env.text_reset(seed=seed)]
    for _ in range(steps):
        out = env.text_step(["Up", "Down", "Left", "Right"][rng.integers(4)])
        outs.append(out)
        if out.terminated or out.truncated:
            outs.append(env.text_reset(seed=int(rng.integers(3))))  # few seeds: levels recur, as in a GRPO group
    return outs


def test_equal_frame_keys_mean_equal_frames_across_envs_and_configs():
    frames: dict[bytes, np.ndarray] = {}
    repeats = 0
    for env_id, config in GRID_CASES:
        for seed in range(2):
            for out in _random_play(env_id, config, seed, 60):
                assert len(out.image_keys) == len(out.images) == 1
                key, frame = out.image_keys[0], out.images[0]
                if key in frames:
                    repeats += 1
                    np.testing.assert_array_equal(frames[key], frame)
                frames[key] = frame
    assert repeats > 100  # the property was exercised, across two instances of each config too
    # same tile codes, different renderer (size, marks): different keys
    first = {str(config): _random_play(env_id, config, 0, 0)[0].image_keys[0] for env_id, config in GRID_CASES[:3]}
    assert len(set(first.values())) == 3


def test_cached_frames_are_sent_byte_equal_and_encoded_once(monkeypatch):
    from atlasrl.envserver import convert
    outs = _random_play("frozenlake", {"size": "4"}, 0, 80)
    fresh = [observation_bytes(o, ["main"])[0] for o in outs]
    calls = []
    real_pack = codec.pack
    monkeypatch.setattr(convert.codec, "pack", lambda image, **kw: calls.append(1) or real_pack(image, **kw))
    cache = convert.FrameCache(1 << 20)
    assert [observation_bytes(o, ["main"], cache)[0] for o in outs] == fresh
    assert len(calls) == len({o.image_keys[0] for o in outs}) < len(outs)
    # bounded: a full cache starts over; 0 turns it off
    budget = 3 * (len(outs[0].image_keys[0]) + len(env_pb2.Observation.FromString(fresh[0]).images[0].data))
    small, off = convert.FrameCache(budget), convert.FrameCache(0)
    for o in outs:
        observation_bytes(o, [], small)
        observation_bytes(o, [], off)
        assert 0 < small.bytes <= budget and len(small._packed) <= 4 and not off._packed


def test_a_misused_key_with_another_shape_is_encoded_afresh():
    from atlasrl.envserver import convert
    cache = convert.FrameCache(1 << 20)
    a = StepOutput(images=[np.zeros((4, 4, 3), np.uint8)], text="", image_keys=[b"k"])
    b = StepOutput(images=[np.ones((8, 8, 3), np.uint8)], text="", image_keys=[b"k"])
    observation_bytes(a, [], cache)
    got = env_pb2.Observation.FromString(observation_bytes(b, [], cache)[0])
    np.testing.assert_array_equal(codec.decode(got.images[0]), b.images[0])
