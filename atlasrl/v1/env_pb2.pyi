from atlasrl.v1 import common_pb2 as _common_pb2
from atlasrl.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_KIND_INVALID: _ClassVar[ActionKind]
    ACTION_KIND_DISCRETE: _ClassVar[ActionKind]
    ACTION_KIND_CONTINUOUS: _ClassVar[ActionKind]
ACTION_KIND_INVALID: ActionKind
ACTION_KIND_DISCRETE: ActionKind
ACTION_KIND_CONTINUOUS: ActionKind

class EnvRequest(_message.Message):
    __slots__ = ("request_id", "open", "reset", "step", "close", "reset_batch")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    RESET_BATCH_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    open: OpenRequest
    reset: ResetRequest
    step: StepRequest
    close: CloseRequest
    reset_batch: ResetBatchRequest
    def __init__(self, request_id: _Optional[int] = ..., open: _Optional[_Union[OpenRequest, _Mapping]] = ..., reset: _Optional[_Union[ResetRequest, _Mapping]] = ..., step: _Optional[_Union[StepRequest, _Mapping]] = ..., close: _Optional[_Union[CloseRequest, _Mapping]] = ..., reset_batch: _Optional[_Union[ResetBatchRequest, _Mapping]] = ...) -> None: ...

class OpenRequest(_message.Message):
    __slots__ = ("env_id", "config", "seed")
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    config: _containers.ScalarMap[str, str]
    seed: int
    def __init__(self, env_id: _Optional[str] = ..., config: _Optional[_Mapping[str, str]] = ..., seed: _Optional[int] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("handle", "seed")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    handle: int
    seed: int
    def __init__(self, handle: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ResetBatchRequest(_message.Message):
    __slots__ = ("resets",)
    RESETS_FIELD_NUMBER: _ClassVar[int]
    resets: _containers.RepeatedCompositeFieldContainer[ResetRequest]
    def __init__(self, resets: _Optional[_Iterable[_Union[ResetRequest, _Mapping]]] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("handle", "text", "values")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    handle: int
    text: str
    values: _tensor_pb2.Tensor
    def __init__(self, handle: _Optional[int] = ..., text: _Optional[str] = ..., values: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("actions", "strict", "auto_reset")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    AUTO_RESET_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[Action]
    strict: bool
    auto_reset: bool
    def __init__(self, actions: _Optional[_Iterable[_Union[Action, _Mapping]]] = ..., strict: _Optional[bool] = ..., auto_reset: _Optional[bool] = ...) -> None: ...

class CloseRequest(_message.Message):
    __slots__ = ("handles",)
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, handles: _Optional[_Iterable[int]] = ...) -> None: ...

class EnvResponse(_message.Message):
    __slots__ = ("request_id", "status", "open", "reset", "step", "close", "reset_batch")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    RESET_BATCH_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    status: _common_pb2.Status
    open: OpenResponse
    reset: ResetResponse
    step: StepResponse
    close: CloseResponse
    reset_batch: ResetBatchResponse
    def __init__(self, request_id: _Optional[int] = ..., status: _Optional[_Union[_common_pb2.Status, _Mapping]] = ..., open: _Optional[_Union[OpenResponse, _Mapping]] = ..., reset: _Optional[_Union[ResetResponse, _Mapping]] = ..., step: _Optional[_Union[StepResponse, _Mapping]] = ..., close: _Optional[_Union[CloseResponse, _Mapping]] = ..., reset_batch: _Optional[_Union[ResetBatchResponse, _Mapping]] = ...) -> None: ...

class OpenResponse(_message.Message):
    __slots__ = ("handle", "spec")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    handle: int
    spec: EnvSpec
    def __init__(self, handle: _Optional[int] = ..., spec: _Optional[_Union[EnvSpec, _Mapping]] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("observation",)
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    observation: Observation
    def __init__(self, observation: _Optional[_Union[Observation, _Mapping]] = ...) -> None: ...

class ResetBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ResetResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ResetResult, _Mapping]]] = ...) -> None: ...

class ResetResult(_message.Message):
    __slots__ = ("handle", "status", "observation")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    handle: int
    status: _common_pb2.Status
    observation: Observation
    def __init__(self, handle: _Optional[int] = ..., status: _Optional[_Union[_common_pb2.Status, _Mapping]] = ..., observation: _Optional[_Union[Observation, _Mapping]] = ...) -> None: ...

class StepResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StepResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StepResult, _Mapping]]] = ...) -> None: ...

class StepResult(_message.Message):
    __slots__ = ("handle", "status", "observation", "reset_observation")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    RESET_OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    handle: int
    status: _common_pb2.Status
    observation: Observation
    reset_observation: Observation
    def __init__(self, handle: _Optional[int] = ..., status: _Optional[_Union[_common_pb2.Status, _Mapping]] = ..., observation: _Optional[_Union[Observation, _Mapping]] = ..., reset_observation: _Optional[_Union[Observation, _Mapping]] = ...) -> None: ...

class CloseResponse(_message.Message):
    __slots__ = ("closed",)
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    closed: int
    def __init__(self, closed: _Optional[int] = ...) -> None: ...

class ListEnvsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEnvsResponse(_message.Message):
    __slots__ = ("envs",)
    ENVS_FIELD_NUMBER: _ClassVar[int]
    envs: _containers.RepeatedCompositeFieldContainer[EnvSpec]
    def __init__(self, envs: _Optional[_Iterable[_Union[EnvSpec, _Mapping]]] = ...) -> None: ...

class EnvSpec(_message.Message):
    __slots__ = ("env_id", "family", "image_shape", "valid_actions", "max_steps", "grid_rows", "grid_cols", "max_actions_per_turn", "action_kind", "action_format", "instruction", "config", "action_dim", "camera_names", "numeric_actions", "action_low", "action_high", "clip_actions")
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    VALID_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    GRID_ROWS_FIELD_NUMBER: _ClassVar[int]
    GRID_COLS_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIONS_PER_TURN_FIELD_NUMBER: _ClassVar[int]
    ACTION_KIND_FIELD_NUMBER: _ClassVar[int]
    ACTION_FORMAT_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ACTION_DIM_FIELD_NUMBER: _ClassVar[int]
    CAMERA_NAMES_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    ACTION_LOW_FIELD_NUMBER: _ClassVar[int]
    ACTION_HIGH_FIELD_NUMBER: _ClassVar[int]
    CLIP_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    family: str
    image_shape: _containers.RepeatedScalarFieldContainer[int]
    valid_actions: _containers.RepeatedScalarFieldContainer[str]
    max_steps: int
    grid_rows: int
    grid_cols: int
    max_actions_per_turn: int
    action_kind: ActionKind
    action_format: str
    instruction: str
    config: _containers.ScalarMap[str, str]
    action_dim: int
    camera_names: _containers.RepeatedScalarFieldContainer[str]
    numeric_actions: bool
    action_low: _containers.RepeatedScalarFieldContainer[float]
    action_high: _containers.RepeatedScalarFieldContainer[float]
    clip_actions: bool
    def __init__(self, env_id: _Optional[str] = ..., family: _Optional[str] = ..., image_shape: _Optional[_Iterable[int]] = ..., valid_actions: _Optional[_Iterable[str]] = ..., max_steps: _Optional[int] = ..., grid_rows: _Optional[int] = ..., grid_cols: _Optional[int] = ..., max_actions_per_turn: _Optional[int] = ..., action_kind: _Optional[_Union[ActionKind, str]] = ..., action_format: _Optional[str] = ..., instruction: _Optional[str] = ..., config: _Optional[_Mapping[str, str]] = ..., action_dim: _Optional[int] = ..., camera_names: _Optional[_Iterable[str]] = ..., numeric_actions: _Optional[bool] = ..., action_low: _Optional[_Iterable[float]] = ..., action_high: _Optional[_Iterable[float]] = ..., clip_actions: _Optional[bool] = ...) -> None: ...

class GridCoord(_message.Message):
    __slots__ = ("row", "col")
    ROW_FIELD_NUMBER: _ClassVar[int]
    COL_FIELD_NUMBER: _ClassVar[int]
    row: int
    col: int
    def __init__(self, row: _Optional[int] = ..., col: _Optional[int] = ...) -> None: ...

class Entity(_message.Message):
    __slots__ = ("kind", "cell", "position", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CELL_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    cell: GridCoord
    position: _containers.RepeatedScalarFieldContainer[float]
    name: str
    def __init__(self, kind: _Optional[str] = ..., cell: _Optional[_Union[GridCoord, _Mapping]] = ..., position: _Optional[_Iterable[float]] = ..., name: _Optional[str] = ...) -> None: ...

class Observation(_message.Message):
    __slots__ = ("images", "text", "reward", "terminated", "truncated", "success", "info", "agent", "entities", "step", "layout_key")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_KEY_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    text: str
    reward: float
    terminated: bool
    truncated: bool
    success: bool
    info: _struct_pb2.Struct
    agent: GridCoord
    entities: _containers.RepeatedCompositeFieldContainer[Entity]
    step: int
    layout_key: str
    def __init__(self, images: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., text: _Optional[str] = ..., reward: _Optional[float] = ..., terminated: _Optional[bool] = ..., truncated: _Optional[bool] = ..., success: _Optional[bool] = ..., info: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., agent: _Optional[_Union[GridCoord, _Mapping]] = ..., entities: _Optional[_Iterable[_Union[Entity, _Mapping]]] = ..., step: _Optional[int] = ..., layout_key: _Optional[str] = ...) -> None: ...
