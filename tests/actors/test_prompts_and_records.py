"""Prompt window (turns, frames, memory hints), seed/group schedule, episode -> proto records."""
import numpy as np
import pytest

from atlasrl import codec
from atlasrl.actors.config import ActorConfig
from atlasrl.actors.episode import EpisodeBuffer
from atlasrl.actors.groups import SeedSchedule
from atlasrl.actors.prompts import MemoryHints, PastTurn, PromptBuilder
from atlasrl.cli.from_model import parse_kv
from atlasrl.v1 import env_pb2, trajectory_pb2

SPEC = env_pb2.EnvSpec(env_id="frozenlake", family="frozenlake", valid_actions=["Up", "Down", "Left", "Right"],
                       instruction="Reach the goal.", grid_rows=4, grid_cols=4)


def frame(v: int):
    return codec.encode(np.full((8, 8, 3), v, np.uint8))


def history(n: int) -> list[PastTurn]:
    return [PastTurn(observation=f"obs{i}", frame=frame(i), response=f"act{i}") for i in range(n)]


def texts(prompt) -> list[str]:
    out = []
    for m in prompt.messages:
        c = m["content"]
        out.append(c if isinstance(c, str) else " ".join(p.get("text", "<img>") for p in c))
    return out


def test_window_keeps_last_k_turns_and_frames_budget():
    b = PromptBuilder(SPEC, context_turns=2, context_images=2, use_image=True)
    p = b.build(history(5), "now", frame(9))
    assert [m["role"] for m in p.messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    t = texts(p)
    assert "Reach the goal." in t[0] and t[1].endswith("obs3") and t[2] == "act3" and t[4] == "act4"
    # Two frames in all: the current one and the most recent past turn's; the older turn is text only.
    assert len(p.images) == 2 and t[1] == "obs3" and t[3] == "<img> obs4" and t[5] == "<img> now"
    assert codec.decode(p.images[0])[0, 0, 0] == 4 and codec.decode(p.images[1])[0, 0, 0] == 9


def test_frame_after_text_puts_every_frame_last_in_its_turn():
    b = PromptBuilder(SPEC, context_turns=1, context_images=2, use_image=True, frame_after_text=True)
    p = b.build(history(2), "You moved down.\nnow", frame(9), MemoryHints(skills=["avoid (1,2)."]))
    assert texts(p)[1:] == ["obs1 <img>", "act1", "Memory: avoid (1,2).\nYou moved down.\nnow <img>"]
    assert p.messages[-1]["content"][-1] == {"type": "image"}     # the last thing before the model answers
    assert [codec.decode(i)[0, 0, 0] for i in p.images] == [1, 9]
    before = PromptBuilder(SPEC, context_turns=1, context_images=2, use_image=True).build(history(2), "now", frame(9))
    assert texts(before)[1:] == ["<img> obs1", "act1", "<img> now"]


def test_text_only_prompt_is_plain_strings_with_memory_skills():
    b = PromptBuilder(SPEC, context_turns=0, use_image=False)
    p = b.build(history(3), "Up: edge", frame(1), MemoryHints(skills=["avoid (1,2)."], overlay=frame(5)))
    assert p.images == [] and len(p.messages) == 2
    assert p.messages[1]["content"] == "Memory: avoid (1,2).\nUp: edge"


def test_overlay_hint_is_an_image_before_the_frame():
    b = PromptBuilder(SPEC, context_turns=0, use_image=True)
    p = b.build([], "x", frame(1), MemoryHints(overlay=frame(7)))
    assert [codec.decode(i)[0, 0, 0] for i in p.images] == [7, 1]


def test_free_mode_system_prompt_names_format_and_actions():
    b = PromptBuilder(SPEC, action_mode="free", use_image=False)
    assert "<answer>" in b.system and "Up, Down, Left, Right" in b.system


def test_bare_prompt_keeps_an_empty_system_message_and_the_observation():
    p = PromptBuilder(SPEC, context_turns=0, use_image=False, bare=True).build([], "Up: hole", None)
    # An empty system message, not none: chat templates insert a default one when it is missing.
    assert p.messages == [{"role": "system", "content": ""}, {"role": "user", "content": "Up: hole"}]


def test_seed_schedule_groups_and_give_back():
    s = SeedSchedule("a", group_size=3, seed_start=10)
    got = [s.next() for _ in range(4)]
    assert got[:3] == [("a/seed-10", 10)] * 3 and got[3] == ("a/seed-11", 11)
    s.give_back("a/seed-10", 10)
    assert s.next() == ("a/seed-10", 10) and s.next() == ("a/seed-11", 11)
    lim = SeedSchedule("e", seed_start=5, limit=2)
    assert [lim.next(), lim.next(), lim.next()] == [("e/seed-5", 5), ("e/seed-6", 6), None] and lim.exhausted


def obs(row, col, **kw):
    o = env_pb2.Observation(agent=env_pb2.GridCoord(row=row, col=col), layout_key="L1", images=[frame(row)], **kw)
    o.entities.add(kind="goal", cell=env_pb2.GridCoord(row=3, col=3))
    return o


def test_episode_to_proto_and_memory_record():
    ep = EpisodeBuffer("e1", group_id="g", seed=4, group_size=2, spec=SPEC, first_obs=obs(0, 0), max_turns=10)
    for i, version in enumerate([3, 3, 4]):
        last = i == 2
        nxt = obs(i + 1, 0, reward=1.0 if last else 0.0, terminated=last, success=last)
        if last:
            nxt.info.update({"terminal_cause": "success"})
        ep.add_turn(trajectory_pb2.TurnRecord(response_ids=[1], logprobs=[-0.1], loss_mask=[1], policy_version=version,
                                              action_text="Down", reward=nxt.reward), nxt)
    assert ep.done and ep.success and ep.terminal_cause == "success" and ep.total_reward == 1.0
    p = ep.to_proto("actor-x")
    assert (p.episode_id, p.actor_id, p.group_id, p.seed, p.group_size) == ("e1", "actor-x", "g", 4, 2)
    assert list(p.policy_versions) == [3, 4] and len(p.turns) == 3 and p.layout_key == "L1" and p.success
    rec = ep.to_memory_record()
    assert [(s.agent.row, s.action) for s in rec.steps] == [(0, ""), (1, "Down"), (2, "Down"), (3, "Down")]
    assert rec.success and rec.terminal_cause == "success" and rec.entities[0].kind == "goal"
    assert [k.step for k in rec.key_frames] == [0, 1, 2, 3] and (rec.grid_rows, rec.grid_cols) == (4, 4)


def test_turn_cap_ends_an_episode_as_timeout():
    ep = EpisodeBuffer("e2", group_id="g", seed=0, group_size=1, spec=SPEC, first_obs=obs(0, 0), max_turns=2)
    for _ in range(2):
        ep.add_turn(trajectory_pb2.TurnRecord(), obs(0, 0))
    assert ep.done and not ep.success and ep.terminal_cause == "timeout" and ep.to_memory_record().truncated


def test_config_validation_and_kv():
    assert ActorConfig(envs="a:1, b:2").envs == ["a:1", "b:2"]
    assert parse_kv(["size=8", "text_mode=grid"]) == {"size": "8", "text_mode": "grid"}
    with pytest.raises(ValueError):
        parse_kv(["size"])
    with pytest.raises(ValueError, match="overlay"):
        ActorConfig(use_image=False, memory_hints="overlay")
    with pytest.raises(ValueError):
        ActorConfig(num_envs=0)
