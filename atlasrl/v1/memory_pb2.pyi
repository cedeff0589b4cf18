from atlasrl.v1 import common_pb2 as _common_pb2
from atlasrl.v1 import env_pb2 as _env_pb2
from atlasrl.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AtlasSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATLAS_SOURCE_INVALID: _ClassVar[AtlasSource]
    ATLAS_SOURCE_LAYOUT: _ClassVar[AtlasSource]
    ATLAS_SOURCE_BLENDED: _ClassVar[AtlasSource]
    ATLAS_SOURCE_FAMILY: _ClassVar[AtlasSource]
    ATLAS_SOURCE_EMPTY: _ClassVar[AtlasSource]

class ExemplarOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXEMPLAR_OUTCOME_INVALID: _ClassVar[ExemplarOutcome]
    EXEMPLAR_OUTCOME_SUCCESS: _ClassVar[ExemplarOutcome]
    EXEMPLAR_OUTCOME_FAILURE: _ClassVar[ExemplarOutcome]
ATLAS_SOURCE_INVALID: AtlasSource
ATLAS_SOURCE_LAYOUT: AtlasSource
ATLAS_SOURCE_BLENDED: AtlasSource
ATLAS_SOURCE_FAMILY: AtlasSource
ATLAS_SOURCE_EMPTY: AtlasSource
EXEMPLAR_OUTCOME_INVALID: ExemplarOutcome
EXEMPLAR_OUTCOME_SUCCESS: ExemplarOutcome
EXEMPLAR_OUTCOME_FAILURE: ExemplarOutcome

class MemoryStep(_message.Message):
    __slots__ = ("agent", "entities", "action", "reward")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    agent: _env_pb2.GridCoord
    entities: _containers.RepeatedCompositeFieldContainer[_env_pb2.Entity]
    action: str
    reward: float
    def __init__(self, agent: _Optional[_Union[_env_pb2.GridCoord, _Mapping]] = ..., entities: _Optional[_Iterable[_Union[_env_pb2.Entity, _Mapping]]] = ..., action: _Optional[str] = ..., reward: _Optional[float] = ...) -> None: ...

class MemoryKeyFrame(_message.Message):
    __slots__ = ("step", "image")
    STEP_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    step: int
    image: _tensor_pb2.Tensor
    def __init__(self, step: _Optional[int] = ..., image: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class EpisodeRecord(_message.Message):
    __slots__ = ("episode_id", "family", "layout_key", "grid_rows", "grid_cols", "steps", "entities", "terminal_cause", "success", "truncated", "key_frames")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_KEY_FIELD_NUMBER: _ClassVar[int]
    GRID_ROWS_FIELD_NUMBER: _ClassVar[int]
    GRID_COLS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_CAUSE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    KEY_FRAMES_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    family: str
    layout_key: str
    grid_rows: int
    grid_cols: int
    steps: _containers.RepeatedCompositeFieldContainer[MemoryStep]
    entities: _containers.RepeatedCompositeFieldContainer[_env_pb2.Entity]
    terminal_cause: str
    success: bool
    truncated: bool
    key_frames: _containers.RepeatedCompositeFieldContainer[MemoryKeyFrame]
    def __init__(self, episode_id: _Optional[str] = ..., family: _Optional[str] = ..., layout_key: _Optional[str] = ..., grid_rows: _Optional[int] = ..., grid_cols: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[MemoryStep, _Mapping]]] = ..., entities: _Optional[_Iterable[_Union[_env_pb2.Entity, _Mapping]]] = ..., terminal_cause: _Optional[str] = ..., success: _Optional[bool] = ..., truncated: _Optional[bool] = ..., key_frames: _Optional[_Iterable[_Union[MemoryKeyFrame, _Mapping]]] = ...) -> None: ...

class IngestRejection(_message.Message):
    __slots__ = ("index", "episode_id", "status")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    index: int
    episode_id: str
    status: _common_pb2.Status
    def __init__(self, index: _Optional[int] = ..., episode_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.Status, _Mapping]] = ...) -> None: ...

class IngestSummary(_message.Message):
    __slots__ = ("received", "accepted", "duplicates", "rejected", "memory_version")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    received: int
    accepted: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[IngestRejection]
    memory_version: int
    def __init__(self, received: _Optional[int] = ..., accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[IngestRejection, _Mapping]]] = ..., memory_version: _Optional[int] = ...) -> None: ...

class MemoryQuery(_message.Message):
    __slots__ = ("family", "layout_key", "grid_rows", "grid_cols", "goal", "has_goal", "frame", "agent", "has_agent", "top_k", "include_overlay")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_KEY_FIELD_NUMBER: _ClassVar[int]
    GRID_ROWS_FIELD_NUMBER: _ClassVar[int]
    GRID_COLS_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    HAS_GOAL_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    HAS_AGENT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_OVERLAY_FIELD_NUMBER: _ClassVar[int]
    family: str
    layout_key: str
    grid_rows: int
    grid_cols: int
    goal: _env_pb2.GridCoord
    has_goal: bool
    frame: _tensor_pb2.Tensor
    agent: _env_pb2.GridCoord
    has_agent: bool
    top_k: int
    include_overlay: bool
    def __init__(self, family: _Optional[str] = ..., layout_key: _Optional[str] = ..., grid_rows: _Optional[int] = ..., grid_cols: _Optional[int] = ..., goal: _Optional[_Union[_env_pb2.GridCoord, _Mapping]] = ..., has_goal: _Optional[bool] = ..., frame: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., agent: _Optional[_Union[_env_pb2.GridCoord, _Mapping]] = ..., has_agent: _Optional[bool] = ..., top_k: _Optional[int] = ..., include_overlay: _Optional[bool] = ...) -> None: ...

class Exemplar(_message.Message):
    __slots__ = ("image", "caption", "outcome", "terminal_cause", "similarity", "layout_key", "episode_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_CAUSE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_KEY_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    image: _tensor_pb2.Tensor
    caption: str
    outcome: ExemplarOutcome
    terminal_cause: str
    similarity: float
    layout_key: str
    episode_id: str
    def __init__(self, image: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., caption: _Optional[str] = ..., outcome: _Optional[_Union[ExemplarOutcome, str]] = ..., terminal_cause: _Optional[str] = ..., similarity: _Optional[float] = ..., layout_key: _Optional[str] = ..., episode_id: _Optional[str] = ...) -> None: ...

class TextSkill(_message.Message):
    __slots__ = ("text", "kind", "support", "rate", "cells")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    text: str
    kind: str
    support: int
    rate: float
    cells: _containers.RepeatedCompositeFieldContainer[_env_pb2.GridCoord]
    def __init__(self, text: _Optional[str] = ..., kind: _Optional[str] = ..., support: _Optional[int] = ..., rate: _Optional[float] = ..., cells: _Optional[_Iterable[_Union[_env_pb2.GridCoord, _Mapping]]] = ...) -> None: ...

class MemoryView(_message.Message):
    __slots__ = ("danger", "affinity", "overlay", "exemplars", "skills", "layout_version", "family_version", "memory_version", "source", "layout_episodes", "family_episodes", "lambda_affinity", "lambda_danger", "gamma")
    DANGER_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    SKILLS_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_VERSION_FIELD_NUMBER: _ClassVar[int]
    FAMILY_VERSION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_EPISODES_FIELD_NUMBER: _ClassVar[int]
    FAMILY_EPISODES_FIELD_NUMBER: _ClassVar[int]
    LAMBDA_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    LAMBDA_DANGER_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    danger: _tensor_pb2.Tensor
    affinity: _tensor_pb2.Tensor
    overlay: _tensor_pb2.Tensor
    exemplars: _containers.RepeatedCompositeFieldContainer[Exemplar]
    skills: _containers.RepeatedCompositeFieldContainer[TextSkill]
    layout_version: int
    family_version: int
    memory_version: int
    source: AtlasSource
    layout_episodes: int
    family_episodes: int
    lambda_affinity: float
    lambda_danger: float
    gamma: float
    def __init__(self, danger: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., affinity: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., overlay: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., exemplars: _Optional[_Iterable[_Union[Exemplar, _Mapping]]] = ..., skills: _Optional[_Iterable[_Union[TextSkill, _Mapping]]] = ..., layout_version: _Optional[int] = ..., family_version: _Optional[int] = ..., memory_version: _Optional[int] = ..., source: _Optional[_Union[AtlasSource, str]] = ..., layout_episodes: _Optional[int] = ..., family_episodes: _Optional[int] = ..., lambda_affinity: _Optional[float] = ..., lambda_danger: _Optional[float] = ..., gamma: _Optional[float] = ...) -> None: ...

class ShapeTransition(_message.Message):
    __slots__ = ("family", "layout_key", "grid_rows", "grid_cols", "cell", "next_cell", "terminal", "goal", "has_goal")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_KEY_FIELD_NUMBER: _ClassVar[int]
    GRID_ROWS_FIELD_NUMBER: _ClassVar[int]
    GRID_COLS_FIELD_NUMBER: _ClassVar[int]
    CELL_FIELD_NUMBER: _ClassVar[int]
    NEXT_CELL_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    HAS_GOAL_FIELD_NUMBER: _ClassVar[int]
    family: str
    layout_key: str
    grid_rows: int
    grid_cols: int
    cell: _env_pb2.GridCoord
    next_cell: _env_pb2.GridCoord
    terminal: bool
    goal: _env_pb2.GridCoord
    has_goal: bool
    def __init__(self, family: _Optional[str] = ..., layout_key: _Optional[str] = ..., grid_rows: _Optional[int] = ..., grid_cols: _Optional[int] = ..., cell: _Optional[_Union[_env_pb2.GridCoord, _Mapping]] = ..., next_cell: _Optional[_Union[_env_pb2.GridCoord, _Mapping]] = ..., terminal: _Optional[bool] = ..., goal: _Optional[_Union[_env_pb2.GridCoord, _Mapping]] = ..., has_goal: _Optional[bool] = ...) -> None: ...

class ShapeBatch(_message.Message):
    __slots__ = ("transitions", "gamma")
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    transitions: _containers.RepeatedCompositeFieldContainer[ShapeTransition]
    gamma: float
    def __init__(self, transitions: _Optional[_Iterable[_Union[ShapeTransition, _Mapping]]] = ..., gamma: _Optional[float] = ...) -> None: ...

class ShapedRewards(_message.Message):
    __slots__ = ("shaping", "phi", "phi_next", "sources", "memory_version", "gamma")
    SHAPING_FIELD_NUMBER: _ClassVar[int]
    PHI_FIELD_NUMBER: _ClassVar[int]
    PHI_NEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    shaping: _containers.RepeatedScalarFieldContainer[float]
    phi: _containers.RepeatedScalarFieldContainer[float]
    phi_next: _containers.RepeatedScalarFieldContainer[float]
    sources: _containers.RepeatedScalarFieldContainer[AtlasSource]
    memory_version: int
    gamma: float
    def __init__(self, shaping: _Optional[_Iterable[float]] = ..., phi: _Optional[_Iterable[float]] = ..., phi_next: _Optional[_Iterable[float]] = ..., sources: _Optional[_Iterable[_Union[AtlasSource, str]]] = ..., memory_version: _Optional[int] = ..., gamma: _Optional[float] = ...) -> None: ...

class MemoryStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AtlasStats(_message.Message):
    __slots__ = ("family", "layout_key", "version", "episodes", "successes", "rows", "cols")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    family: str
    layout_key: str
    version: int
    episodes: int
    successes: int
    rows: int
    cols: int
    def __init__(self, family: _Optional[str] = ..., layout_key: _Optional[str] = ..., version: _Optional[int] = ..., episodes: _Optional[int] = ..., successes: _Optional[int] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class MemoryStats(_message.Message):
    __slots__ = ("memory_version", "episodes_ingested", "episodes_rejected", "atlases", "exemplars", "last_snapshot_unix", "last_snapshot_version")
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    EPISODES_INGESTED_FIELD_NUMBER: _ClassVar[int]
    EPISODES_REJECTED_FIELD_NUMBER: _ClassVar[int]
    ATLASES_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    memory_version: int
    episodes_ingested: int
    episodes_rejected: int
    atlases: _containers.RepeatedCompositeFieldContainer[AtlasStats]
    exemplars: int
    last_snapshot_unix: float
    last_snapshot_version: int
    def __init__(self, memory_version: _Optional[int] = ..., episodes_ingested: _Optional[int] = ..., episodes_rejected: _Optional[int] = ..., atlases: _Optional[_Iterable[_Union[AtlasStats, _Mapping]]] = ..., exemplars: _Optional[int] = ..., last_snapshot_unix: _Optional[float] = ..., last_snapshot_version: _Optional[int] = ...) -> None: ...

class MemorySnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MemorySnapshotInfo(_message.Message):
    __slots__ = ("path", "memory_version", "bytes", "seconds")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    path: str
    memory_version: int
    bytes: int
    seconds: float
    def __init__(self, path: _Optional[str] = ..., memory_version: _Optional[int] = ..., bytes: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class MemoryResetRequest(_message.Message):
    __slots__ = ("family", "layout_key")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_KEY_FIELD_NUMBER: _ClassVar[int]
    family: str
    layout_key: str
    def __init__(self, family: _Optional[str] = ..., layout_key: _Optional[str] = ...) -> None: ...

class MemoryResetResponse(_message.Message):
    __slots__ = ("atlases_removed", "exemplars_removed", "memory_version")
    ATLASES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    atlases_removed: int
    exemplars_removed: int
    memory_version: int
    def __init__(self, atlases_removed: _Optional[int] = ..., exemplars_removed: _Optional[int] = ..., memory_version: _Optional[int] = ...) -> None: ...
