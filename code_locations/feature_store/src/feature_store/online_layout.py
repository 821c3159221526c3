"""How Feast lays a feature view row out in Redis, for reading and writing it directly.

One Redis hash per entity: the key is the serialized entity key plus the project, each
feature is a field named by the murmur3 hash of ``"<view>:<feature>"`` holding a Value proto,
and ``_ts:<view>`` holds the row's event time. The checks read these bytes without Feast's
SDK, so they test what is stored; the benchmark writes them to measure a raw baseline.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from feast.infra.key_encoding_utils import deserialize_entity_key
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

ENTITY_KEY_SERIALIZATION_VERSION = 3


def entity_key(project: str, join_key: str, value: int) -> bytes:
    """The Redis key of one entity (an INT64 join key, as all of ours are)."""
    proto = EntityKey(join_keys=[join_key], entity_values=[Value(int64_val=value)])
    return _redis_key(project, proto, ENTITY_KEY_SERIALIZATION_VERSION)


def entity_of(key: bytes, project: str) -> tuple[str, int] | None:
    """The (join key, value) a Redis key stands for; None for a key of another shape."""
    suffix = project.encode()
    if not key.endswith(suffix):
        return None
    try:
        proto = deserialize_entity_key(key[: -len(suffix)], ENTITY_KEY_SERIALIZATION_VERSION)
    except (ValueError, IndexError, struct.error, DecodeError):  # another writer's key
        return None
    if len(proto.join_keys) != 1 or proto.entity_values[0].WhichOneof("val") != "int64_val":
        return None
    return proto.join_keys[0], proto.entity_values[0].int64_val


def view_entities(client: redis.Redis, project: str, view: str, join_key: str) -> list[int]:
    """Every entity whose Redis hash holds a row of ``view`` (a SCAN, then HEXISTS in batches)."""
    field = timestamp_field(view)
    entities = []
    for keys in project_keys(client, project):
        candidates = [(key, entity_of(key, project)) for key in keys]
        candidates = [(k, e) for k, e in candidates if e is not None and e[0] == join_key]
        with client.pipeline(transaction=False) as pipe:
            for key, _ in candidates:
                pipe.hexists(key, field)  # type: ignore[arg-type]  # binary keys and fields
            present = pipe.execute()
        entities += [e[1] for (_, e), has in zip(candidates, present, strict=True) if has and e]
    return entities


def remove_rows(
    client: redis.Redis,
    project: str,
    view: str,
    join_key: str,
    features: Sequence[str],
    entities: Sequence[int],
) -> None:
    """Delete ``view``'s row of each entity (its fields; Redis drops a hash left empty)."""
    fields = [timestamp_field(view), *(feature_field(view, name) for name in features)]
    with client.pipeline(transaction=False) as pipe:
        for entity in entities:
            pipe.hdel(entity_key(project, join_key, entity), *fields)  # type: ignore[arg-type]
        pipe.execute()


def feature_field(view: str, feature: str) -> bytes:
    return _mmh3(f"{view}:{feature}")


def timestamp_field(view: str) -> bytes:
    return f"_ts:{view}".encode()


def decode_value(raw: bytes | None) -> Any:
    """A stored Value proto as a Python value; None for a missing field or a null."""
    if raw is None:
        return None
    proto = Value()
    proto.ParseFromString(raw)
    return feast_value_type_to_python_type(proto)


def decode_timestamp(raw: bytes | None) -> datetime | None:
    if raw is None:
        return None
    proto = Timestamp()
    proto.ParseFromString(raw)
    return proto.ToDatetime(tzinfo=UTC)


# the Value proto field Feast fills for each scalar type we use
_VALUE_FIELDS = {
    ValueType.INT32: "int32_val",
    ValueType.INT64: "int64_val",
    ValueType.DOUBLE: "double_val",
    ValueType.FLOAT: "float_val",
    ValueType.STRING: "string_val",
    ValueType.BOOL: "bool_val",
}
_NULL = Value().SerializeToString()


def encode_values(values: Sequence[Any], value_type: ValueType) -> list[bytes]:
    """One feature column as Feast stores it (a null is an empty Value); scalar types only."""
    field = _VALUE_FIELDS[value_type]
    return [_NULL if v is None else Value(**{field: v}).SerializeToString() for v in values]


def encode_timestamp(moment: datetime) -> bytes:
    proto = Timestamp()
    proto.FromDatetime(moment)
    return proto.SerializeToString()


def project_keys(client: redis.Redis, project: str, batch: int = 1000) -> Iterator[list[bytes]]:
    """Every entity key of a project, in batches (SCAN: never blocks the server)."""
    keys: list[bytes] = []
    pattern = "*" + "".join(f"\\{c}" if c in "*?[]\\" else c for c in project)
    for key in client.scan_iter(match=pattern, count=batch):
        keys.append(key)
        if len(keys) == batch:
            yield keys
            keys = []
    if keys:
        yield keys


def served_timestamps(client: redis.Redis, project: str, view: str) -> Iterator[datetime]:
    """The event time of every row of ``view`` that Redis serves."""
    field = timestamp_field(view)
    for keys in project_keys(client, project):
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, field)  # type: ignore[arg-type]  # binary keys and fields
            for raw in pipe.execute():
                if raw is not None:
                    moment = decode_timestamp(raw)
                    assert moment is not None
                    yield moment
