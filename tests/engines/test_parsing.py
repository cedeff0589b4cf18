"""Action modes: free-format parsing (incl. malformed outputs) and choice mapping."""
import pytest

from atlasrl.actors.parsing import FormatRewards, parse_choice, parse_free

VALID = ["Up", "Down", "Left", "Right"]
R = FormatRewards(ok=0.05, invalid_penalty=-0.2)


@pytest.mark.parametrize("text,action", [
    ("<think>box is left</think><answer>Left</answer>", "Left"),
    ("  <think>\nmulti\nline\n</think>\n<answer> up </answer>\n", "Up"),
    ("<think></think><answer>RIGHT</answer>", "Right"),
])
def test_well_formed(text, action):
    p = parse_free(text, VALID, rewards=R)
    assert (p.action, p.format_ok, p.reason, p.format_reward) == (action, True, "", 0.05)


def test_several_actions_up_to_the_limit():
    p = parse_free("<think>t</think><answer>Up, left ,Down</answer>", VALID, max_actions=3)
    assert p.action == "Up, Left, Down" and p.think == "t"
    p = parse_free("<think>t</think><answer>Up, Left</answer>", VALID, max_actions=1, rewards=R)
    assert p.action is None and "at most 1" in p.reason and p.format_reward == -0.2


@pytest.mark.parametrize("text,reason", [
    ("Left", "missing <answer>"),
    ("", "missing <answer>"),
    ("<think>x</think><answer>Left", "unterminated <answer>"),
    ("<answer>Left</answer>", "missing <think>"),
    ("<think>x</think><answer>Left</answer> and more", "text after </answer>"),
    ("Sure! <think>x</think><answer>Left</answer>", "text outside"),
    ("<think>x</think><answer></answer>", "empty <answer>"),
    ("<think>x</think><answer>Jump</answer>", "not a valid action: 'Jump'"),
    ("<think>x</think><answer>Up</answer><answer>Down</answer>", "nested or repeated"),
    ("<think>a<think>b</think><answer>Up</answer>", "nested or repeated"),
    ("<think>x</think><answer>Up,</answer>", "not a valid action: ''"),
])
def test_malformed_outputs_become_penalised_no_ops(text, reason):
    p = parse_free(text, VALID, max_actions=2, rewards=R)
    assert p.action is None and not p.format_ok and not p.valid
    assert reason in p.reason
    assert p.format_reward == -0.2


def test_continuous_envs_get_the_answer_text():
    p = parse_free("<think>reach</think><answer>move(3, 4, 1); grip(close)</answer>", None)
    assert p.action == "move(3, 4, 1); grip(close)" and p.format_ok


def test_choice_maps_the_index():
    assert parse_choice(2, VALID).action == "Left"
    for bad in (None, 4, -1):
        p = parse_choice(bad, VALID, rewards=R)
        assert p.action is None and p.format_reward == -0.2
