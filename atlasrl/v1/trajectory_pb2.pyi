from atlasrl.v1 import common_pb2 as _common_pb2
from atlasrl.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_MODE_INVALID: _ClassVar[ActionMode]
    ACTION_MODE_FREE: _ClassVar[ActionMode]
    ACTION_MODE_CHOICE: _ClassVar[ActionMode]
    ACTION_MODE_FLOW: _ClassVar[ActionMode]
ACTION_MODE_INVALID: ActionMode
ACTION_MODE_FREE: ActionMode
ACTION_MODE_CHOICE: ActionMode
ACTION_MODE_FLOW: ActionMode

class ActionChunk(_message.Message):
    __slots__ = ("path", "times", "sent")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    path: _tensor_pb2.Tensor
    times: _tensor_pb2.Tensor
    sent: _tensor_pb2.Tensor
    def __init__(self, path: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., times: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., sent: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class TokenSeq(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class TurnRecord(_message.Message):
    __slots__ = ("prompt_ids", "response_ids", "logprobs", "loss_mask", "reward", "env_reward", "format_reward", "shaping_reward", "policy_version", "images", "action_mode", "choices", "temperature", "action_text", "action_valid", "state_key", "chunk", "token_versions")
    PROMPT_IDS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_IDS_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    LOSS_MASK_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    ENV_REWARD_FIELD_NUMBER: _ClassVar[int]
    FORMAT_REWARD_FIELD_NUMBER: _ClassVar[int]
    SHAPING_REWARD_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    ACTION_MODE_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    ACTION_TEXT_FIELD_NUMBER: _ClassVar[int]
    ACTION_VALID_FIELD_NUMBER: _ClassVar[int]
    STATE_KEY_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TOKEN_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    prompt_ids: _containers.RepeatedScalarFieldContainer[int]
    response_ids: _containers.RepeatedScalarFieldContainer[int]
    logprobs: _containers.RepeatedScalarFieldContainer[float]
    loss_mask: _containers.RepeatedScalarFieldContainer[int]
    reward: float
    env_reward: float
    format_reward: float
    shaping_reward: float
    policy_version: int
    images: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    action_mode: ActionMode
    choices: _containers.RepeatedCompositeFieldContainer[TokenSeq]
    temperature: float
    action_text: str
    action_valid: bool
    state_key: bytes
    chunk: ActionChunk
    token_versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, prompt_ids: _Optional[_Iterable[int]] = ..., response_ids: _Optional[_Iterable[int]] = ..., logprobs: _Optional[_Iterable[float]] = ..., loss_mask: _Optional[_Iterable[int]] = ..., reward: _Optional[float] = ..., env_reward: _Optional[float] = ..., format_reward: _Optional[float] = ..., shaping_reward: _Optional[float] = ..., policy_version: _Optional[int] = ..., images: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., action_mode: _Optional[_Union[ActionMode, str]] = ..., choices: _Optional[_Iterable[_Union[TokenSeq, _Mapping]]] = ..., temperature: _Optional[float] = ..., action_text: _Optional[str] = ..., action_valid: _Optional[bool] = ..., state_key: _Optional[bytes] = ..., chunk: _Optional[_Union[ActionChunk, _Mapping]] = ..., token_versions: _Optional[_Iterable[int]] = ...) -> None: ...

class Episode(_message.Message):
    __slots__ = ("episode_id", "actor_id", "group_id", "policy_versions", "turns", "success", "env_id", "family", "layout_key", "seed", "terminal_cause", "group_size", "bootstrap")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_KEY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_CAUSE_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    BOOTSTRAP_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    actor_id: str
    group_id: str
    policy_versions: _containers.RepeatedScalarFieldContainer[int]
    turns: _containers.RepeatedCompositeFieldContainer[TurnRecord]
    success: bool
    env_id: str
    family: str
    layout_key: str
    seed: int
    terminal_cause: str
    group_size: int
    bootstrap: TurnRecord
    def __init__(self, episode_id: _Optional[str] = ..., actor_id: _Optional[str] = ..., group_id: _Optional[str] = ..., policy_versions: _Optional[_Iterable[int]] = ..., turns: _Optional[_Iterable[_Union[TurnRecord, _Mapping]]] = ..., success: _Optional[bool] = ..., env_id: _Optional[str] = ..., family: _Optional[str] = ..., layout_key: _Optional[str] = ..., seed: _Optional[int] = ..., terminal_cause: _Optional[str] = ..., group_size: _Optional[int] = ..., bootstrap: _Optional[_Union[TurnRecord, _Mapping]] = ...) -> None: ...

class PushAck(_message.Message):
    __slots__ = ("accepted", "duplicates", "acked_ids", "rejected", "learner_version")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    ACKED_IDS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    LEARNER_VERSION_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    acked_ids: _containers.RepeatedScalarFieldContainer[str]
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedEpisode]
    learner_version: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., acked_ids: _Optional[_Iterable[str]] = ..., rejected: _Optional[_Iterable[_Union[RejectedEpisode, _Mapping]]] = ..., learner_version: _Optional[int] = ...) -> None: ...

class RejectedEpisode(_message.Message):
    __slots__ = ("episode_id", "status", "reason")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    status: _common_pb2.Status
    reason: str
    def __init__(self, episode_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.Status, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class CloseGroupsRequest(_message.Message):
    __slots__ = ("actor_id",)
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    def __init__(self, actor_id: _Optional[str] = ...) -> None: ...

class CloseGroupsReply(_message.Message):
    __slots__ = ("closed", "dropped")
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    closed: int
    dropped: int
    def __init__(self, closed: _Optional[int] = ..., dropped: _Optional[int] = ...) -> None: ...

class TrajectoryInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrajectoryInfo(_message.Message):
    __slots__ = ("version", "buffered", "capacity", "max_staleness", "consumed", "ready", "batch_episodes", "wants_bootstrap")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    BATCH_EPISODES_FIELD_NUMBER: _ClassVar[int]
    WANTS_BOOTSTRAP_FIELD_NUMBER: _ClassVar[int]
    version: int
    buffered: int
    capacity: int
    max_staleness: int
    consumed: int
    ready: int
    batch_episodes: int
    wants_bootstrap: bool
    def __init__(self, version: _Optional[int] = ..., buffered: _Optional[int] = ..., capacity: _Optional[int] = ..., max_staleness: _Optional[int] = ..., consumed: _Optional[int] = ..., ready: _Optional[int] = ..., batch_episodes: _Optional[int] = ..., wants_bootstrap: _Optional[bool] = ...) -> None: ...
