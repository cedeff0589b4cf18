"""The memory's per-turn view in the prompt (risk words, overlay around the agent, exemplars), its start-up
checks, and an actor that keeps acting through a memory outage and picks the memory up again."""
import re
import time

import numpy as np
import pytest
from pydantic import ValidationError

from atlasrl import codec
from atlasrl.actors.actor import start_actor, stop_actor
from atlasrl.actors.config import ActorConfig
from atlasrl.actors.memory_view import TurnView, risk_word
from atlasrl.memory.config import MemoryConfig
from atlasrl.memory.server import MemoryServer
from atlasrl.rpc import ServerConfig
from atlasrl.up.ports import free_ports
from atlasrl.v1 import env_pb2

from .conftest import actor_config


def obs_at(row: int, col: int, text: str, frame: np.ndarray | None = None) -> env_pb2.Observation:
    o = env_pb2.Observation(text=text, agent=env_pb2.GridCoord(row=row, col=col))
    if frame is not None:
        o.images.append(codec.encode(frame, "frame"))
    return o


def test_risk_words_follow_the_agent_and_the_danger_map():
    danger = np.zeros((4, 4), np.float32)
    danger[1, 1], danger[2, 0] = 0.9, 0.2
    view = TurnView(danger, np.zeros_like(danger), risk=True)
    text = "Goal: 3 down, 3 right.\nUp: edge\nDown: ice\nLeft: edge\nRight: ice"
    assert view.annotate(obs_at(0, 1, text)).split("\n") == [
        "Goal: 3 down, 3 right.", "Up: edge", "Down: ice (risk high)", "Left: edge", "Right: ice (risk low)"]
    moved = view.annotate(obs_at(1, 0, "Up: ice\nDown: ice\nLeft: edge\nRight: ice"))
    assert moved.split("\n") == ["Up: ice (risk low)", "Down: ice (risk some)", "Left: edge", "Right: ice (risk high)"]
    assert TurnView(danger, danger, risk=False).annotate(obs_at(0, 1, text)) == text      # channel off: unchanged
    assert [risk_word(x) for x in (0.0, 0.15, 0.49, 0.5)] == ["low", "some", "some", "high"]


def test_the_overlay_is_redrawn_each_turn_around_the_agent():
    rng = np.random.default_rng(0)
    danger, affinity = rng.random((4, 4)).astype(np.float32), rng.random((4, 4)).astype(np.float32)
    frame = np.full((64, 64, 3), 200, np.uint8)
    view = TurnView(danger, affinity, overlay=True, skills=["avoid (1,1)."])
    ha, hb = view.hints(obs_at(0, 0, "x", frame)), view.hints(obs_at(3, 3, "x", frame))
    a, b = codec.decode(ha.overlay), codec.decode(hb.overlay)   # a wire tensor, like the frames of a prompt
    assert a.shape == frame.shape and ha.skills == ["avoid (1,1)."]
    yellow = np.array([255, 220, 0], np.uint8)
    assert (a[0, 0] == yellow).all() and not (a[63, 63] == yellow).all()   # outline on the agent's cell
    assert (b[63, 63] == yellow).all() and not (b[0, 0] == yellow).all()
    assert TurnView(danger, affinity).hints(obs_at(0, 0, "x", frame)).overlay is None


def test_an_egocentric_frame_gets_the_same_window_of_the_maps():
    """frozenlake-vl's frame is the agent's 3x3 window (view=egocentric): the overlay tints the window's cells from
    the maps' cells around the agent, the centre is the agent's, and cells beyond the map's edge stay untinted."""
    from atlasrl.actors.memory_view import egocentric_radius, window_of
    from atlasrl.envserver import registry
    from atlasrl.envserver.convert import spec_to_proto

    env = registry.make("frozenlake", {"size": "4", "view": "egocentric", "view_radius": "1", "cell_px": "28"}, seed=0)
    spec = spec_to_proto(env.spec_info())
    assert egocentric_radius(spec) == 1
    assert egocentric_radius(spec_to_proto(registry.make("frozenlake", {"size": "4"}, seed=0).spec_info())) is None
    danger = np.zeros((4, 4), np.float32)
    danger[1, 2] = 1.0                                  # a remembered hole right of (1, 1), below-right of (0, 1)
    assert window_of(danger, (0, 1), 1).tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 1]]
    view = TurnView(danger, np.zeros_like(danger), overlay=True, window=1)
    frame = np.full((84, 84, 3), 200, np.uint8)          # 3x3 cells of 28 px
    cell = lambda img, r, c: img[r * 28 + 14, c * 28 + 14]   # noqa: E731 - the centre pixel of a window cell
    at_11 = codec.decode(view.hints(obs_at(1, 1, "x", frame)).overlay)
    assert cell(at_11, 1, 2)[0] > cell(at_11, 1, 2)[1] + 50            # red where the hole is: right of the agent
    assert all((cell(at_11, r, c) == 200).all() for r in range(3) for c in range(3) if (r, c) != (1, 2))
    assert (at_11[28, 40] == np.array([255, 220, 0])).all()          # the outline sits on the centre cell
    at_01 = codec.decode(view.hints(obs_at(0, 1, "x", frame)).overlay)
    assert cell(at_01, 2, 2)[0] > cell(at_01, 2, 2)[1] + 50 and (cell(at_01, 0, 1) == 200).all()


def test_exemplars_and_overlay_reach_the_prompt_images():
    """As the rollout builds a turn: the env's frame as it came (a wire tensor), the memory's images beside it,
    and every prompt image decodable as the engine (Policy.generate) and the learner decode them."""
    from atlasrl.actors.prompts import PromptBuilder

    spec = env_pb2.EnvSpec(env_id="frozenlake", valid_actions=["Up", "Down"], instruction="go")
    ex = [(np.zeros((8, 8, 3), np.uint8), "failure (hole)"), (np.ones((8, 8, 3), np.uint8), "success")]
    view = TurnView(np.zeros((4, 4)), np.zeros((4, 4)), overlay=True, exemplars=ex)
    obs = obs_at(0, 0, "Up: ice", np.full((16, 16, 3), 9, np.uint8))
    b = PromptBuilder(spec, use_image=True, context_turns=0)
    p = b.build([], "Up: ice", obs.images[0], view.hints(obs))
    decoded = [codec.decode(t) for t in p.images]
    assert len(decoded) == 4 and (decoded[0] == ex[0][0]).all() and (decoded[1] == ex[1][0]).all()
    assert decoded[2].shape == (16, 16, 3) and p.images[-1] is obs.images[0]   # the overlay, then the frame
    texts = [part["text"] for part in p.messages[-1]["content"] if part["type"] == "text"]
    assert texts[:2] == ["Remembered: failure (hole)", "Remembered: success"]


def test_a_blended_overlay_stands_in_for_the_frame():
    """memory_overlay=blend: the tinted frame replaces the frame (one image, where the policy reads the map), no
    extra captioned image; it does not count against the image budget."""
    from atlasrl.actors.prompts import PromptBuilder

    danger = np.zeros((4, 4), np.float32)
    danger[0, 1] = 1.0
    spec = env_pb2.EnvSpec(env_id="frozenlake", valid_actions=["Up", "Down"], instruction="go")
    obs = obs_at(0, 0, "Up: edge", np.full((64, 64, 3), 200, np.uint8))
    b = PromptBuilder(spec, use_image=True, context_turns=0)
    p = b.build([], "Up: edge", obs.images[0], TurnView(danger, np.zeros_like(danger), overlay=True, blend=True).hints(obs))
    assert len(p.images) == 1 and p.images[0] is not obs.images[0]
    tinted = codec.decode(p.images[0])
    assert tinted[8, 24][0] > tinted[8, 24][1] + 50 and (tinted[40, 40] == 200).all()   # (0, 1) red, (2, 2) as it was
    assert not any(part.get("text", "").startswith("Memory map") for part in p.messages[-1]["content"])
    ActorConfig(use_image=True, context_images=8, memory_hints="overlay", memory_overlay="blend")   # fits: no 9th image


@pytest.mark.parametrize("kw,words", [
    (dict(use_image=True, context_images=6, memory_hints="overlay", memory_exemplars=2),
     "context_images (6) + the memory overlay (1) + memory_exemplars (2) = 9 images exceed max_prompt_images (8)"),
    (dict(use_image=False, memory_exemplars=1), "memory_exemplars needs use_image"),
])
def test_image_budget_is_checked_at_start_up(kw, words):
    with pytest.raises(ValidationError, match=re.escape(words)):
        ActorConfig(**kw)


async def test_actor_acts_through_a_memory_outage_and_recovers(tiny_engine, env_server, learner):
    """Memory down mid-run: episodes go on with an empty view (misses counted); back on the same port: the risk
    words return to the prompts."""
    (port,) = free_ports(1)
    memory = MemoryServer(MemoryConfig(server=ServerConfig(port=port)))
    await memory.start()
    cfg = actor_config(envs=[env_server.address], learner=learner.address, memory=memory.address,
                       memory_hints="none", memory_risk=True, memory_shaping=True)
    parts = await start_actor(cfg, engine=tiny_engine)
    misses = parts.policy.m.memory_misses
    try:
        await parts.loop.run(max_episodes=16)        # the memory ingests: later groups get maps (risk words)
        await parts.memory.flush(10)
        with_memory = parts.loop.finished
        await memory.stop(0)
        await parts.loop.run(max_episodes=with_memory + 8)
        assert parts.loop.finished >= with_memory + 8, "the actor stopped acting without its memory"
        assert parts.memory.misses > 0 and misses._value.get() == parts.memory.misses
        down_misses = parts.memory.misses
        memory = MemoryServer(MemoryConfig(server=ServerConfig(port=port)))
        await memory.start()
        t_back = time.monotonic()
        while True:   # until a round of episodes starts with no miss: the channel found the memory again
            seen = parts.memory.misses
            await parts.loop.run(max_episodes=parts.loop.finished + 8)
            if parts.memory.misses == seen:
                break
            assert time.monotonic() - t_back < 60, "the actor did not find the memory again within 60 s"
        recovered_s = time.monotonic() - t_back
        # The restarted memory is empty (RAM only): it learns this family again from the episodes it now
        # ingests, and the groups after that read its maps again.
        await parts.sender.flush(20)
        before = len(learner.episodes())
        risk_again = False
        for _ in range(8):
            await parts.memory.flush(10)
            await parts.loop.run(max_episodes=parts.loop.finished + 8)
            await parts.sender.flush(20)
            later = learner.episodes()[before:]
            if any("(risk " in tiny_engine.tokenizer.decode(t.prompt_ids) for ep in later for t in ep.turns):
                risk_again = True
                break
    finally:
        await stop_actor(parts)
        await memory.stop(0)
    print(f"memory back: queries answered again after {recovered_s:.1f} s, {parts.memory.misses - down_misses} "
          "more misses")
    assert risk_again, "no risk word in the prompts after the memory came back"


async def test_placebo_reads_another_layouts_atlas_and_oracle_the_true_map():
    """The ablation arms: placebo queries the memory for the layout seen last that is not this one (nothing
    before a second layout exists); oracle builds the view from the hole entities, without a query."""
    from atlasrl.actors.memory_hints import EpisodeAdvice, MemoryAdvisor

    spec = env_pb2.EnvSpec(family="frozenlake", grid_rows=4, grid_cols=4)
    asked: list[str] = []
    placebo = MemoryAdvisor("127.0.0.1:1", hints="none", risk=True, shaping=False, source="placebo")

    async def fake_query(spec_, obs, layout_key):
        asked.append(layout_key)
        return EpisodeAdvice(view=TurnView(np.zeros((4, 4)), np.zeros((4, 4)), risk=True))

    placebo._query_service = fake_query
    for key in ("A", "B", "A", "C"):
        o = obs_at(0, 0, "Down: ice")
        o.layout_key = key
        advice = await placebo.episode_start(spec, o)
        assert (advice.view is None) is (key == "A" and not asked)
    assert asked == ["A", "B", "A"]   # B got A's view, A got B's, C got A's: never its own layout
    await placebo.close()

    oracle = MemoryAdvisor("127.0.0.1:1", hints="overlay", risk=True, shaping=False, source="oracle")
    o = obs_at(0, 1, "Up: edge\nDown: ice\nLeft: ice\nRight: ice")
    o.entities.add(kind="hole", cell=env_pb2.GridCoord(row=1, col=1))
    o.entities.add(kind="goal", cell=env_pb2.GridCoord(row=3, col=3))
    advice = await oracle.episode_start(spec, o)
    assert advice.text(o).split("\n")[1:] == ["Down: ice (risk high)", "Left: ice (risk low)", "Right: ice (risk low)"]
    assert advice.hints(o).overlay is not None and oracle.misses == 0   # no service was asked (none listens there)
    await oracle.close()


async def test_the_overlay_can_show_the_danger_map_alone():
    """memory_overlay_maps=danger: the view keeps the memory's danger map and drops its affinity (green), the
    channel a policy can follow only on layouts it has already solved (docs/results/2026-12-07-hidden-holes-memory.md)."""
    from atlasrl.actors.memory_hints import MemoryAdvisor
    from atlasrl.v1 import memory_pb2

    danger, affinity = np.zeros((4, 4), np.float16), np.zeros((4, 4), np.float16)
    danger[1, 1], affinity[0, 1] = 1.0, 1.0

    async def query(q, timeout=None):
        return memory_pb2.MemoryView(danger=codec.encode(danger, compress=True), affinity=codec.encode(affinity, compress=True))

    spec = env_pb2.EnvSpec(family="frozenlake", grid_rows=4, grid_cols=4)
    frame = np.full((64, 64, 3), 200, np.uint8)
    tints = {}
    for maps in ("both", "danger"):
        cfg = ActorConfig(use_image=True, memory="127.0.0.1:1", memory_hints="overlay", memory_overlay_maps=maps, memory_shaping=False)
        advisor = MemoryAdvisor.from_config(cfg)
        advisor._stub = type("Stub", (), {"Query": staticmethod(query)})()
        advice = await advisor.episode_start(spec, obs_at(0, 0, "x", frame))
        tints[maps] = codec.decode(advice.hints(obs_at(0, 0, "x", frame)).overlay)
        await advisor.close()
    red = lambda px: int(px[0]) > int(px[1]) + 50    # noqa: E731
    green = lambda px: int(px[1]) > int(px[0]) + 50  # noqa: E731
    assert red(tints["both"][24, 24]) and red(tints["danger"][24, 24])           # (1, 1) red in both
    assert green(tints["both"][8, 24]) and (tints["danger"][8, 24] == 200).all()  # (0, 1) green only with both


def test_oracle_holes_are_entities_only():
    from atlasrl.envserver import registry
    from atlasrl.envserver.convert import observation_to_proto

    cfg = {"hidden_holes": "true", "oracle_holes": "true", "hole_prob": "0.3", "layout_pool": "4"}
    oracle = observation_to_proto(registry.make("frozenlake", cfg, seed=1).text_reset(seed=1))[0]
    hidden = observation_to_proto(registry.make("frozenlake", {**cfg, "oracle_holes": "false"}, seed=1)
                                  .text_reset(seed=1))[0]
    assert [e.kind for e in oracle.entities].count("hole") > 0 == [e.kind for e in hidden.entities].count("hole")
    assert oracle.text == hidden.text and oracle.images[0].data == hidden.images[0].data
    with pytest.raises(ValueError, match="oracle_holes has no effect without hidden_holes"):
        registry.make("frozenlake", {"oracle_holes": "true"}, seed=0)
