"""Per-episode checks before an episode enters the buffer; each failure names the turn and field.

Pure functions on ``atlasrl.v1.Episode`` (no gRPC): the service maps ``Malformed``
to INVALID_ARGUMENT and ``Unacceptable`` to FAILED_PRECONDITION inside PushAck.
"""
from __future__ import annotations

import math

from atlasrl import codec
from atlasrl.v1 import trajectory_pb2

MAX_ID_CHARS = 128
MAX_IMAGES_PER_TURN = 64


class EpisodeRejected(ValueError):
    """An episode refused for good; the message says why."""


class Malformed(EpisodeRejected):
    """The data itself is wrong (lengths, ranges, modes)."""


class Unacceptable(EpisodeRejected):
    """Well-formed but not trainable now: too stale, or made by a version the learner never published."""

    def __init__(self, message: str, reason: str = "stale"):
        super().__init__(message)
        self.reason = reason
        """For episode accounting (RejectedEpisode.reason): "stale" or "unknown_version"."""


def validate_episode(ep: trajectory_pb2.Episode, *, vocab_size: int, max_seq_tokens: int, need_group: bool) -> None:
    """Raise ``Malformed`` naming the first problem; return None for a well-formed episode."""
    if not ep.episode_id:
        raise Malformed("episode_id is empty")
    if len(ep.episode_id) > MAX_ID_CHARS:
        raise Malformed(f"episode_id is {len(ep.episode_id)} characters; at most {MAX_ID_CHARS}")
    if not ep.turns:
        raise Malformed("episode has no turns")
    if need_group and not ep.group_id:
        raise Malformed("group_id is empty; GRPO needs the group of each episode")
    for i, turn in enumerate(ep.turns):
        _validate_turn(turn, f"turn {i}", vocab_size, max_seq_tokens)
    if ep.HasField("bootstrap"):
        _validate_turn(ep.bootstrap, "bootstrap", vocab_size, max_seq_tokens)
    versions = sorted({v for t in ep.turns for v in (t.token_versions or [t.policy_version])})
    if list(ep.policy_versions) and list(ep.policy_versions) != versions:
        raise Malformed(f"policy_versions {list(ep.policy_versions)} does not match the turns' versions {versions}")


def _validate_turn(t: trajectory_pb2.TurnRecord, where: str, vocab_size: int, max_seq_tokens: int) -> None:
    if t.action_mode == trajectory_pb2.ACTION_MODE_FLOW:   # an action-head turn: numbers, not tokens
        from atlasrl.policies.action_head.learning import validate_flow_turn

        try:
            validate_flow_turn(t)
        except ValueError as e:
            raise Malformed(f"{where}: {e}") from None
        return
    n = len(t.response_ids)
    if not t.prompt_ids:
        raise Malformed(f"{where}: prompt_ids is empty")
    if n == 0:
        raise Malformed(f"{where}: response_ids is empty")
    if len(t.logprobs) != n:
        raise Malformed(f"{where}: {len(t.logprobs)} logprobs for {n} response tokens (must be equal)")
    if len(t.loss_mask) != n:
        raise Malformed(f"{where}: {len(t.loss_mask)} loss_mask entries for {n} response tokens (must be equal)")
    total = len(t.prompt_ids) + n
    if total > max_seq_tokens:
        raise Malformed(f"{where}: {total} prompt+response tokens exceed max_seq_tokens={max_seq_tokens}")
    for field in ("prompt_ids", "response_ids"):
        ids = getattr(t, field)
        lo, hi = min(ids), max(ids)
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise Malformed(f"{where}: {field} holds token id {bad} outside the vocabulary [0, {vocab_size})")
    if any(m not in (0, 1) for m in t.loss_mask):
        raise Malformed(f"{where}: loss_mask must hold only 0 and 1")
    for j, lp in enumerate(t.logprobs):
        if not math.isfinite(lp) or lp > 1e-3:
            raise Malformed(f"{where}: logprob {lp} of response token {j} is not a finite value <= 0")
    for name in ("reward", "env_reward", "format_reward", "shaping_reward"):
        if not math.isfinite(getattr(t, name)):
            raise Malformed(f"{where}: {name} is not finite")
    if not math.isfinite(t.temperature) or t.temperature < 0:
        raise Malformed(f"{where}: temperature {t.temperature} must be finite and >= 0")
    if t.policy_version < 0:
        raise Malformed(f"{where}: policy_version {t.policy_version} is negative")
    if t.token_versions:   # a turn that spans weight versions (interrupt): one version per token, in order
        tv = list(t.token_versions)
        if len(tv) != n:
            raise Malformed(f"{where}: {len(tv)} token_versions for {n} response tokens (must be equal)")
        if tv[0] != t.policy_version or tv != sorted(tv):
            raise Malformed(f"{where}: token_versions must be non-decreasing and start at policy_version "
                            f"{t.policy_version}, got {tv}")
    if t.action_mode == trajectory_pb2.ACTION_MODE_CHOICE:
        _validate_choice(t, where)
    elif t.action_mode != trajectory_pb2.ACTION_MODE_FREE:
        raise Malformed(f"{where}: action_mode {t.action_mode} is not ACTION_MODE_FREE or ACTION_MODE_CHOICE")
    if len(t.images) > MAX_IMAGES_PER_TURN:
        raise Malformed(f"{where}: {len(t.images)} images; at most {MAX_IMAGES_PER_TURN}")
    for k, img in enumerate(t.images):
        try:
            arr = codec.decode(img)
        except codec.CodecError as e:
            raise Malformed(f"{where}: image {k}: {e}") from None
        if arr.dtype != "uint8" or arr.ndim != 3 or arr.shape[2] != 3:
            raise Malformed(f"{where}: image {k} must be uint8 HxWx3, got {arr.dtype} {list(arr.shape)}")


def _validate_choice(t: trajectory_pb2.TurnRecord, where: str) -> None:
    if not t.choices:
        raise Malformed(f"{where}: ACTION_MODE_CHOICE without choices")
    from atlasrl.models.choice import allowed_per_position  # the trie the learner masks with

    response = list(t.response_ids)
    if any(not c.ids for c in t.choices):
        raise Malformed(f"{where}: a choice is empty")
    if not any(list(c.ids) == response for c in t.choices):
        raise Malformed(f"{where}: response_ids is not one of the {len(t.choices)} choices")
    try:
        allowed_per_position([list(c.ids) for c in t.choices], response)
    except ValueError as e:
        raise Malformed(f"{where}: invalid choices: {e}") from None


class ModelInputCheck:
    """Checks that need the model: images only for VL models, and as many image tokens as they expand to.

    ``info`` is an ``atlasrl.models.load.Policy`` (``with_model=False`` is enough).
    """

    def __init__(self, info):
        self.info = info

    def __call__(self, ep: trajectory_pb2.Episode) -> None:
        from atlasrl.models.chat import image_token_counts

        for i, t in enumerate(ep.turns):
            if not self.info.is_vl:
                if t.images:
                    raise Malformed(f"turn {i}: {len(t.images)} images but the learner's model is text-only")
                continue
            n_tokens = sum(1 for x in t.prompt_ids if x == self.info.image_token_id)
            expected = sum(image_token_counts(self.info, [codec.decode(img) for img in t.images])) if t.images else 0
            if n_tokens != expected:
                raise Malformed(f"turn {i}: {n_tokens} image tokens in prompt_ids but the {len(t.images)} images expand to {expected}")


def episode_versions(ep: trajectory_pb2.Episode) -> tuple[int, int]:
    """(oldest, newest) policy version used by the episode's turns."""
    versions = [v for t in ep.turns for v in (t.token_versions or [t.policy_version])]
    return min(versions), max(versions)


def check_versions(ep: trajectory_pb2.Episode, learner_version: int, max_staleness: int, drop_stale: bool) -> int:
    """Lag of the episode (learner_version - oldest turn version); raise ``Unacceptable`` if it cannot train."""
    oldest, newest = episode_versions(ep)
    if newest > learner_version:
        raise Unacceptable(
            f"policy_version {newest} is newer than the learner's version {learner_version}; "
            "it was not produced from weights this learner published", reason="unknown_version"
        )
    lag = learner_version - oldest
    if drop_stale and lag > max_staleness:
        raise Unacceptable(f"episode is {lag} versions stale (policy_version {oldest}, learner {learner_version}); "
                           f"max_staleness={max_staleness}", reason="stale")
    return lag
