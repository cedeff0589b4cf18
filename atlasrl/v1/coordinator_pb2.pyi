from atlasrl.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_INVALID: _ClassVar[Role]
    ROLE_ENVSERVER: _ClassVar[Role]
    ROLE_ACTOR: _ClassVar[Role]
    ROLE_LEARNER: _ClassVar[Role]
    ROLE_MEMORY: _ClassVar[Role]
    ROLE_OTHER: _ClassVar[Role]
    ROLE_CRITIC: _ClassVar[Role]

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_INVALID: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_PAUSED: _ClassVar[RunState]
    RUN_STATE_STOPPING: _ClassVar[RunState]
ROLE_INVALID: Role
ROLE_ENVSERVER: Role
ROLE_ACTOR: Role
ROLE_LEARNER: Role
ROLE_MEMORY: Role
ROLE_OTHER: Role
ROLE_CRITIC: Role
RUN_STATE_INVALID: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_PAUSED: RunState
RUN_STATE_STOPPING: RunState

class RegisterRequest(_message.Message):
    __slots__ = ("role", "address", "capacity", "capabilities", "name", "metrics_address")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    role: Role
    address: str
    capacity: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    name: str
    metrics_address: str
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., address: _Optional[str] = ..., capacity: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ..., metrics_address: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("member_id", "lease_ttl_s", "view")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    lease_ttl_s: float
    view: RunView
    def __init__(self, member_id: _Optional[str] = ..., lease_ttl_s: _Optional[float] = ..., view: _Optional[_Union[RunView, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("member_id", "policy_version", "counters", "gauges", "last_error", "error_count")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class GaugesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    GAUGES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    policy_version: int
    counters: _containers.ScalarMap[str, int]
    gauges: _containers.ScalarMap[str, float]
    last_error: str
    error_count: int
    def __init__(self, member_id: _Optional[str] = ..., policy_version: _Optional[int] = ..., counters: _Optional[_Mapping[str, int]] = ..., gauges: _Optional[_Mapping[str, float]] = ..., last_error: _Optional[str] = ..., error_count: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("view", "may_proceed")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    MAY_PROCEED_FIELD_NUMBER: _ClassVar[int]
    view: RunView
    may_proceed: bool
    def __init__(self, view: _Optional[_Union[RunView, _Mapping]] = ..., may_proceed: _Optional[bool] = ...) -> None: ...

class DeregisterRequest(_message.Message):
    __slots__ = ("member_id",)
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    def __init__(self, member_id: _Optional[str] = ...) -> None: ...

class DeregisterResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.Status
    def __init__(self, status: _Optional[_Union[_common_pb2.Status, _Mapping]] = ...) -> None: ...

class GetAssignmentRequest(_message.Message):
    __slots__ = ("member_id",)
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    def __init__(self, member_id: _Optional[str] = ...) -> None: ...

class EnvSlot(_message.Message):
    __slots__ = ("member_id", "address", "slots")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    address: str
    slots: int
    def __init__(self, member_id: _Optional[str] = ..., address: _Optional[str] = ..., slots: _Optional[int] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("generation", "env_servers", "learner_address", "memory_address", "critic_address")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ENV_SERVERS_FIELD_NUMBER: _ClassVar[int]
    LEARNER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CRITIC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    generation: int
    env_servers: _containers.RepeatedCompositeFieldContainer[EnvSlot]
    learner_address: str
    memory_address: str
    critic_address: str
    def __init__(self, generation: _Optional[int] = ..., env_servers: _Optional[_Iterable[_Union[EnvSlot, _Mapping]]] = ..., learner_address: _Optional[str] = ..., memory_address: _Optional[str] = ..., critic_address: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("member_id",)
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    def __init__(self, member_id: _Optional[str] = ...) -> None: ...

class RunView(_message.Message):
    __slots__ = ("policy_version", "run_state", "assignment_generation", "max_staleness", "learner_address", "memory_address")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_STATE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_GENERATION_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_FIELD_NUMBER: _ClassVar[int]
    LEARNER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    policy_version: int
    run_state: RunState
    assignment_generation: int
    max_staleness: int
    learner_address: str
    memory_address: str
    def __init__(self, policy_version: _Optional[int] = ..., run_state: _Optional[_Union[RunState, str]] = ..., assignment_generation: _Optional[int] = ..., max_staleness: _Optional[int] = ..., learner_address: _Optional[str] = ..., memory_address: _Optional[str] = ...) -> None: ...

class SetRunStateRequest(_message.Message):
    __slots__ = ("run_state", "reason")
    RUN_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run_state: RunState
    reason: str
    def __init__(self, run_state: _Optional[_Union[RunState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("include_dead", "history_points")
    INCLUDE_DEAD_FIELD_NUMBER: _ClassVar[int]
    HISTORY_POINTS_FIELD_NUMBER: _ClassVar[int]
    include_dead: bool
    history_points: int
    def __init__(self, include_dead: _Optional[bool] = ..., history_points: _Optional[int] = ...) -> None: ...

class MemberInfo(_message.Message):
    __slots__ = ("member_id", "role", "name", "address", "metrics_address", "capacity", "capabilities", "alive", "last_heartbeat_age_s", "policy_version", "counters", "gauges", "last_error", "error_count", "registered_at")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class GaugesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    GAUGES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    role: Role
    name: str
    address: str
    metrics_address: str
    capacity: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    alive: bool
    last_heartbeat_age_s: float
    policy_version: int
    counters: _containers.ScalarMap[str, int]
    gauges: _containers.ScalarMap[str, float]
    last_error: str
    error_count: int
    registered_at: float
    def __init__(self, member_id: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., metrics_address: _Optional[str] = ..., capacity: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., alive: _Optional[bool] = ..., last_heartbeat_age_s: _Optional[float] = ..., policy_version: _Optional[int] = ..., counters: _Optional[_Mapping[str, int]] = ..., gauges: _Optional[_Mapping[str, float]] = ..., last_error: _Optional[str] = ..., error_count: _Optional[int] = ..., registered_at: _Optional[float] = ...) -> None: ...

class HistoryPoint(_message.Message):
    __slots__ = ("time", "counters", "gauges")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class GaugesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TIME_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    GAUGES_FIELD_NUMBER: _ClassVar[int]
    time: float
    counters: _containers.ScalarMap[str, int]
    gauges: _containers.ScalarMap[str, float]
    def __init__(self, time: _Optional[float] = ..., counters: _Optional[_Mapping[str, int]] = ..., gauges: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("view", "members", "counters", "gauges", "history", "started_at", "uptime_s")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class GaugesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VIEW_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    GAUGES_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    view: RunView
    members: _containers.RepeatedCompositeFieldContainer[MemberInfo]
    counters: _containers.ScalarMap[str, int]
    gauges: _containers.ScalarMap[str, float]
    history: _containers.RepeatedCompositeFieldContainer[HistoryPoint]
    started_at: float
    uptime_s: float
    def __init__(self, view: _Optional[_Union[RunView, _Mapping]] = ..., members: _Optional[_Iterable[_Union[MemberInfo, _Mapping]]] = ..., counters: _Optional[_Mapping[str, int]] = ..., gauges: _Optional[_Mapping[str, float]] = ..., history: _Optional[_Iterable[_Union[HistoryPoint, _Mapping]]] = ..., started_at: _Optional[float] = ..., uptime_s: _Optional[float] = ...) -> None: ...
