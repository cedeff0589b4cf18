from atlasrl.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WeightTransport(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEIGHT_TRANSPORT_UNSPECIFIED: _ClassVar[WeightTransport]
    WEIGHT_TRANSPORT_STREAM: _ClassVar[WeightTransport]
    WEIGHT_TRANSPORT_DELTA: _ClassVar[WeightTransport]
    WEIGHT_TRANSPORT_COLLECTIVE: _ClassVar[WeightTransport]

class TensorEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TENSOR_ENCODING_RAW: _ClassVar[TensorEncoding]
    TENSOR_ENCODING_XOR_ZSTD: _ClassVar[TensorEncoding]
    TENSOR_ENCODING_DIFF_ZSTD: _ClassVar[TensorEncoding]
WEIGHT_TRANSPORT_UNSPECIFIED: WeightTransport
WEIGHT_TRANSPORT_STREAM: WeightTransport
WEIGHT_TRANSPORT_DELTA: WeightTransport
WEIGHT_TRANSPORT_COLLECTIVE: WeightTransport
TENSOR_ENCODING_RAW: TensorEncoding
TENSOR_ENCODING_XOR_ZSTD: TensorEncoding
TENSOR_ENCODING_DIFF_ZSTD: TensorEncoding

class NegotiateRequest(_message.Message):
    __slots__ = ("subscriber_id", "wanted")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    WANTED_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    wanted: WeightTransport
    def __init__(self, subscriber_id: _Optional[str] = ..., wanted: _Optional[_Union[WeightTransport, str]] = ...) -> None: ...

class NegotiateReply(_message.Message):
    __slots__ = ("offered", "collective")
    OFFERED_FIELD_NUMBER: _ClassVar[int]
    COLLECTIVE_FIELD_NUMBER: _ClassVar[int]
    offered: _containers.RepeatedScalarFieldContainer[WeightTransport]
    collective: CollectiveInfo
    def __init__(self, offered: _Optional[_Iterable[_Union[WeightTransport, str]]] = ..., collective: _Optional[_Union[CollectiveInfo, _Mapping]] = ...) -> None: ...

class CollectiveInfo(_message.Message):
    __slots__ = ("store_host", "store_port", "backend", "timeout_s")
    STORE_HOST_FIELD_NUMBER: _ClassVar[int]
    STORE_PORT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    store_host: str
    store_port: int
    backend: str
    timeout_s: float
    def __init__(self, store_host: _Optional[str] = ..., store_port: _Optional[int] = ..., backend: _Optional[str] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class CollectiveRound(_message.Message):
    __slots__ = ("generation", "rank", "world_size", "bucket_bytes")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    BUCKET_BYTES_FIELD_NUMBER: _ClassVar[int]
    generation: int
    rank: int
    world_size: int
    bucket_bytes: int
    def __init__(self, generation: _Optional[int] = ..., rank: _Optional[int] = ..., world_size: _Optional[int] = ..., bucket_bytes: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("subscriber_id", "after_version", "transport", "have_version")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    HAVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    after_version: int
    transport: WeightTransport
    have_version: int
    def __init__(self, subscriber_id: _Optional[str] = ..., after_version: _Optional[int] = ..., transport: _Optional[_Union[WeightTransport, str]] = ..., have_version: _Optional[int] = ...) -> None: ...

class WeightUpdate(_message.Message):
    __slots__ = ("version", "begin", "part", "end", "collective")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BEGIN_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    COLLECTIVE_FIELD_NUMBER: _ClassVar[int]
    version: int
    begin: WeightManifest
    part: TensorPart
    end: VersionEnd
    collective: CollectiveRound
    def __init__(self, version: _Optional[int] = ..., begin: _Optional[_Union[WeightManifest, _Mapping]] = ..., part: _Optional[_Union[TensorPart, _Mapping]] = ..., end: _Optional[_Union[VersionEnd, _Mapping]] = ..., collective: _Optional[_Union[CollectiveRound, _Mapping]] = ...) -> None: ...

class WeightManifest(_message.Message):
    __slots__ = ("version", "tensors", "total_bytes", "is_delta", "base_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    IS_DELTA_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    tensors: _containers.RepeatedCompositeFieldContainer[TensorMeta]
    total_bytes: int
    is_delta: bool
    base_version: int
    def __init__(self, version: _Optional[int] = ..., tensors: _Optional[_Iterable[_Union[TensorMeta, _Mapping]]] = ..., total_bytes: _Optional[int] = ..., is_delta: _Optional[bool] = ..., base_version: _Optional[int] = ...) -> None: ...

class TensorMeta(_message.Message):
    __slots__ = ("name", "dtype", "shape", "nbytes", "crc32", "encoding", "wire_nbytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    WIRE_NBYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: _tensor_pb2.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    nbytes: int
    crc32: int
    encoding: TensorEncoding
    wire_nbytes: int
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[_Union[_tensor_pb2.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., nbytes: _Optional[int] = ..., crc32: _Optional[int] = ..., encoding: _Optional[_Union[TensorEncoding, str]] = ..., wire_nbytes: _Optional[int] = ...) -> None: ...

class TensorPart(_message.Message):
    __slots__ = ("index", "offset", "data")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    index: int
    offset: int
    data: bytes
    def __init__(self, index: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class VersionEnd(_message.Message):
    __slots__ = ("num_tensors",)
    NUM_TENSORS_FIELD_NUMBER: _ClassVar[int]
    num_tensors: int
    def __init__(self, num_tensors: _Optional[int] = ...) -> None: ...

class PublishAck(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class GetLatestRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
