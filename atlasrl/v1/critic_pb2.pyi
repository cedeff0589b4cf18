from atlasrl.v1 import env_pb2 as _env_pb2
from atlasrl.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OracleState(_message.Message):
    __slots__ = ("success", "has_agent", "agent", "has_goal", "goal", "grid_rows", "grid_cols")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    HAS_AGENT_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    HAS_GOAL_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    GRID_ROWS_FIELD_NUMBER: _ClassVar[int]
    GRID_COLS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    has_agent: bool
    agent: _env_pb2.GridCoord
    has_goal: bool
    goal: _env_pb2.GridCoord
    grid_rows: int
    grid_cols: int
    def __init__(self, success: _Optional[bool] = ..., has_agent: _Optional[bool] = ..., agent: _Optional[_Union[_env_pb2.GridCoord, _Mapping]] = ..., has_goal: _Optional[bool] = ..., goal: _Optional[_Union[_env_pb2.GridCoord, _Mapping]] = ..., grid_rows: _Optional[int] = ..., grid_cols: _Optional[int] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("image", "oracle")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ORACLE_FIELD_NUMBER: _ClassVar[int]
    image: _tensor_pb2.Tensor
    oracle: OracleState
    def __init__(self, image: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., oracle: _Optional[_Union[OracleState, _Mapping]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("task", "frames", "last_only")
    TASK_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    LAST_ONLY_FIELD_NUMBER: _ClassVar[int]
    task: str
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    last_only: bool
    def __init__(self, task: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ..., last_only: _Optional[bool] = ...) -> None: ...

class FrameScore(_message.Message):
    __slots__ = ("progress", "done_probability")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DONE_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    progress: float
    done_probability: float
    def __init__(self, progress: _Optional[float] = ..., done_probability: _Optional[float] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("scores", "batch_size", "queue_ms", "model_ms", "backend")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_MS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[FrameScore]
    batch_size: int
    queue_ms: float
    model_ms: float
    backend: str
    def __init__(self, scores: _Optional[_Iterable[_Union[FrameScore, _Mapping]]] = ..., batch_size: _Optional[int] = ..., queue_ms: _Optional[float] = ..., model_ms: _Optional[float] = ..., backend: _Optional[str] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("task", "a", "b")
    TASK_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    task: str
    a: Frame
    b: Frame
    def __init__(self, task: _Optional[str] = ..., a: _Optional[_Union[Frame, _Mapping]] = ..., b: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class CompareResponse(_message.Message):
    __slots__ = ("delta",)
    DELTA_FIELD_NUMBER: _ClassVar[int]
    delta: float
    def __init__(self, delta: _Optional[float] = ...) -> None: ...

class CriticInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CriticInfo(_message.Message):
    __slots__ = ("backend", "model", "max_side", "max_task_chars", "max_frames_per_request", "max_batch", "max_wait_ms", "frames_scored", "batches", "device", "pairwise")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_TASK_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_SCORED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PAIRWISE_FIELD_NUMBER: _ClassVar[int]
    backend: str
    model: str
    max_side: int
    max_task_chars: int
    max_frames_per_request: int
    max_batch: int
    max_wait_ms: float
    frames_scored: int
    batches: int
    device: str
    pairwise: bool
    def __init__(self, backend: _Optional[str] = ..., model: _Optional[str] = ..., max_side: _Optional[int] = ..., max_task_chars: _Optional[int] = ..., max_frames_per_request: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_wait_ms: _Optional[float] = ..., frames_scored: _Optional[int] = ..., batches: _Optional[int] = ..., device: _Optional[str] = ..., pairwise: _Optional[bool] = ...) -> None: ...

class RecordedEpisode(_message.Message):
    __slots__ = ("episode_id", "env_id", "task", "frames", "success", "truncated")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    env_id: str
    task: str
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    success: bool
    truncated: bool
    def __init__(self, episode_id: _Optional[str] = ..., env_id: _Optional[str] = ..., task: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ..., success: _Optional[bool] = ..., truncated: _Optional[bool] = ...) -> None: ...
