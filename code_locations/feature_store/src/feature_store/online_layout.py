"""How Feast lays a feature view row out in Redis, for reading and writing it directly.

One Redis hash per entity: the key is the serialized entity key plus the project, each
feature is a field named by the murmur3 hash of ``"<view>:<feature>"`` holding a Value proto,
and ``_ts:<view>`` holds the row's event time. The checks read these bytes without Feast's
SDK, so they test what is stored; the benchmark writes them to measure a raw baseline.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Sequence, Set
from datetime import UTC, datetime
from typing import Any

import redis
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

ENTITY_KEY_SERIALIZATION_VERSION = 3
_INT64 = struct.Struct("<q")


def _feast_entity_key(project: str, join_key: str, value: int) -> bytes:
    proto = EntityKey(join_keys=[join_key], entity_values=[Value(int64_val=value)])
    return _redis_key(project, proto, ENTITY_KEY_SERIALIZATION_VERSION)


@functools.cache
def _key_frame(project: str, join_key: str) -> tuple[bytes, bytes]:
    """The bytes before and after the 8-byte value in the key of an INT64 entity.

    Feast's serializer costs microseconds per key, a million keys per materialization; the
    frame is taken from it once and checked against it, so a change of layout fails here.
    """
    suffix = project.encode()
    prefix = _feast_entity_key(project, join_key, 0)[: -8 - len(suffix)]
    for value in (1, -2, 2**40 + 3):
        if prefix + _INT64.pack(value) + suffix != _feast_entity_key(project, join_key, value):
            raise RuntimeError(
                f"Feast's Redis key of {join_key}={value} is not <prefix><int64 LE><project>: "
                "the entity key layout changed; update feature_store.online_layout."
            )
    return prefix, suffix


def entity_key(project: str, join_key: str, value: int) -> bytes:
    """The Redis key of one entity (an INT64 join key, as all of ours are)."""
    prefix, suffix = _key_frame(project, join_key)
    return prefix + _INT64.pack(value) + suffix


def entity_keys(project: str, join_key: str, values: Sequence[int]) -> list[bytes]:
    prefix, suffix = _key_frame(project, join_key)
    pack = _INT64.pack
    return [prefix + pack(value) + suffix for value in values]


def entities_of(keys: Sequence[bytes], project: str, join_key: str) -> list[int]:
    """The entity values of the keys that belong to ``join_key`` in ``project``."""
    prefix, suffix = _key_frame(project, join_key)
    size, start = len(prefix) + 8 + len(suffix), len(prefix)
    return [
        _INT64.unpack_from(key, start)[0]
        for key in keys
        if len(key) == size and key.startswith(prefix) and key.endswith(suffix)
    ]


def view_entities(
    client: redis.Redis, project: str, view: str, join_key: str, skip: Set[int] = frozenset()
) -> list[int]:
    """Every entity whose Redis hash holds a row of ``view``, except ``skip`` (known ones):
    a SCAN, then HEXISTS in batches for the keys of ``join_key`` not skipped."""
    field = timestamp_field(view)
    entities = []
    for keys in project_keys(client, project):
        candidates = [e for e in entities_of(keys, project, join_key) if e not in skip]
        with client.pipeline(transaction=False) as pipe:
            for key in entity_keys(project, join_key, candidates):
                pipe.hexists(key, field)  # type: ignore[arg-type]  # binary keys and fields
            present = pipe.execute() if candidates else []
        entities += [e for e, has in zip(candidates, present, strict=True) if has]
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
    """One feature column as Feast stores it (a null is an empty Value); scalar types only.

    Features repeat values across entities (counts, categories): each distinct value is
    serialized once.
    """
    field = _VALUE_FIELDS[value_type]
    if value_type in (ValueType.DOUBLE, ValueType.FLOAT):  # -0.0 == 0.0 but encodes apart
        return [_NULL if v is None else Value(**{field: v}).SerializeToString() for v in values]
    encoded: dict[Any, bytes] = {None: _NULL}
    out = []
    for value in values:
        raw = encoded.get(value)
        if raw is None:
            raw = encoded[value] = Value(**{field: value}).SerializeToString()
        out.append(raw)
    return out


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack_rows(
    keys: Sequence[bytes],
    view: str,
    stamps: Sequence[bytes],
    fields: Sequence[bytes],
    columns: Sequence[Sequence[bytes]],
    ttl_seconds: int | None,
    bulks: dict[bytes, bytes] | None = None,
) -> tuple[bytes, int]:
    """HSET each entity's row of ``view`` (the bytes Feast's Redis store writes), then its TTL,
    as one buffer of Redis protocol for a CommandStream; and how many replies it gets.

    ``columns[i][j]`` is the encoded value of ``fields[i]`` for ``keys[j]``. The buffer is
    built from the few distinct values a column holds (``bulks`` caches their encoding across
    calls): redis-py's pipeline spends most of a bulk write packing command by command.
    """
    bulks = {} if bulks is None else bulks

    def bulk(value: bytes) -> bytes:
        out = bulks.get(value)
        if out is None:
            out = bulks[value] = _bulk(value)
        return out

    head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (1 + len(fields)))
    ts_field = _bulk(timestamp_field(view))
    field_bulks = [_bulk(field) for field in fields]
    ttl = _bulk(b"%d" % ttl_seconds) if ttl_seconds else None
    parts: list[bytes] = []
    for j, key in enumerate(keys):
        key_bulk = _bulk(key)
        parts += (head, key_bulk, ts_field, bulk(stamps[j]))
        for field, column in zip(field_bulks, columns, strict=True):
            parts += (field, bulk(column[j]))
        if ttl:
            parts += (b"*3\r\n$6\r\nEXPIRE\r\n", key_bulk, ttl)
    return b"".join(parts), len(keys) * (2 if ttl else 1)


class CommandStream:
    """Buffers of packed commands on one pooled connection. A buffer's replies are read once
    the next buffer is sent, so Redis executes one buffer while the caller builds the next.
    Every reply is read; an error reply raises once its buffer's replies are all read (the
    connection is then dropped, never reused out of step)."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._connection: Any = None
        self._pending = 0

    def __enter__(self) -> CommandStream:
        self._connection = self._pool.get_connection()
        return self

    def send(self, buffer: bytes, replies: int) -> None:
        if replies:
            self._connection.send_packed_command([buffer])
            self._read(self._pending)
            self._pending = replies

    def _read(self, replies: int) -> None:
        error = None
        read = self._connection.read_response
        for _ in range(replies):
            try:
                read()
            except redis.ResponseError as reply:
                error = error or reply
        self._pending = 0
        if error is not None:
            raise error

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        try:
            if kind is None:
                self._read(self._pending)
        except BaseException:
            kind = True
            raise
        finally:
            if kind is not None:
                self._connection.disconnect()
            self._pool.release(self._connection)


# For each key: when the hash holds the row stamped ARGV[1 + 2i] (the version before the new
# one, with equal values), restamp it ARGV[2 + 2i] and renew its TTL; else report i.
_RESTAMP = """
local field, ttl, stale = ARGV[1], tonumber(ARGV[2]), {}
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, field) == ARGV[1 + 2 * i] then
    redis.call('HSET', key, field, ARGV[2 + 2 * i])
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
  else
    stale[#stale + 1] = i
  end
end
return stale
"""


def restamp_rows(
    client: redis.Redis,
    keys: Sequence[bytes],
    view: str,
    previous: Sequence[bytes],
    stamps: Sequence[bytes],
    ttl_seconds: int | None,
    batch: int = 1000,
) -> list[int]:
    """Move unchanged rows to their new version's event time; the positions Redis did not
    hold at the previous version (expired, lost, or rewritten since), which need a full write.
    """
    script = client.register_script(_RESTAMP)
    stale: list[int] = []
    with client.pipeline(transaction=False) as pipe:
        for offset in range(0, len(keys), batch):
            chunk = range(offset, min(offset + batch, len(keys)))
            args: list[Any] = [timestamp_field(view), ttl_seconds or 0]
            for j in chunk:
                args += (previous[j], stamps[j])
            script(keys=[keys[j] for j in chunk], args=args, client=pipe)
        for offset, positions in zip(range(0, len(keys), batch), pipe.execute(), strict=True):
            stale += [offset + i - 1 for i in positions]
    return stale


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
