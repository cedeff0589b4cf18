"""Action modes: turn a model response into the action text sent to the env.

    parsed = parse_free("<think>box left of me</think><answer>Left</answer>", ["Up", "Down", "Left", "Right"])
    parsed.action, parsed.format_ok, parsed.reason, parsed.format_reward   # "Left", True, "", 0.0
    parse_free("Left!", valid)      # -> action None: a no-op step with rewards.invalid_penalty
    parse_choice(generation, ["Up", "Down"])   # choice mode: always valid by construction

free: the model writes ``<think>…</think><answer>…</answer>`` (whitespace
around the blocks is fine, anything else is not). The answer holds 1 to
``max_actions`` actions separated by commas; with a discrete action set each
must name a valid action (case-insensitive, returned in the env's spelling).
Continuous envs (``valid_actions=None``) get the answer text as is; the env
parses it. Invalid output becomes ``action=None`` with a reason; the actor
sends no action (a no-op turn) and adds ``format_reward`` (the penalty).

choice: constrained decoding (atlasrl.models.choice) guarantees a valid
choice; the parser only maps the engine's ``choice_index`` to the action.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

FREE_STOP = "</answer>"   # engines stop free-mode generation here (include_stop_str_in_output=True)

_FREE = re.compile(r"\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*", re.DOTALL)
_TAG = re.compile(r"</?(think|answer)>")


@dataclass(frozen=True)
class FormatRewards:
    ok: float = 0.0                 # added when the format is right
    invalid_penalty: float = -0.1   # added on a no-op turn caused by invalid output


@dataclass(frozen=True)
class ParsedAction:
    action: str | None          # text for the env's text_step; None = no-op turn
    format_ok: bool
    reason: str                 # why the output was rejected ("" when format_ok)
    format_reward: float
    think: str = ""

    @property
    def valid(self) -> bool:
        return self.action is not None


def _invalid(reason: str, rewards: FormatRewards, think: str = "") -> ParsedAction:
    return ParsedAction(action=None, format_ok=False, reason=reason,
                        format_reward=rewards.invalid_penalty, think=think)


def parse_free(text: str, valid_actions: Sequence[str] | None, max_actions: int = 1,
               rewards: FormatRewards = FormatRewards()) -> ParsedAction:
    m = _FREE.fullmatch(text)
    if m is None:
        return _invalid(_why_malformed(text), rewards)
    think, answer = m["think"].strip(), m["answer"].strip()
    if _TAG.search(m["think"]) or _TAG.search(m["answer"]):
        return _invalid("nested or repeated <think>/<answer> tags", rewards, think)
    if not answer:
        return _invalid("empty <answer>", rewards, think)
    if valid_actions is None:
        return ParsedAction(action=answer, format_ok=True, reason="", format_reward=rewards.ok, think=think)
    by_lower = {a.lower(): a for a in valid_actions}
    parts = [p.strip() for p in answer.split(",")]
    if len(parts) > max_actions:
        return _invalid(f"{len(parts)} actions in <answer>, at most {max_actions} allowed", rewards, think)
    unknown = [p for p in parts if p.lower() not in by_lower]
    if unknown:
        return _invalid(f"not a valid action: {unknown[0]!r} (valid: {', '.join(valid_actions)})", rewards, think)
    action = ", ".join(by_lower[p.lower()] for p in parts)
    return ParsedAction(action=action, format_ok=True, reason="", format_reward=rewards.ok, think=think)


def _why_malformed(text: str) -> str:
    if "<answer>" not in text:
        return "missing <answer>…</answer>"
    if "</answer>" not in text:
        return "unterminated <answer> (no </answer>)"
    if "<think>" not in text or "</think>" not in text:
        return "missing <think>…</think> before <answer>"
    if text.strip().endswith("</answer>"):
        return "text outside the <think>…</think><answer>…</answer> blocks"
    return "text after </answer>"


def parse_choice(choice_index: int | None, choices: Sequence[str],
                 rewards: FormatRewards = FormatRewards()) -> ParsedAction:
    """Map the engine's choice to its action; out-of-range or missing is a no-op."""
    if choice_index is None or not 0 <= choice_index < len(choices):
        return _invalid(f"no complete choice (index {choice_index})", rewards)
    return ParsedAction(action=choices[choice_index], format_ok=True, reason="", format_reward=rewards.ok)
