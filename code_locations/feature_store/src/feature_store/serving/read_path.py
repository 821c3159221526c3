"""A lean POST /get-online-features: Feast's request and response, fewer steps between them.

Feast's handler validates with pydantic, hops to a thread for the feature service, reads, then
hops to a thread again to turn the response protobuf into a dict, formatting the timestamp of
every cell on the way (for 100 users that conversion alone costs more than the Redis read).
This path answers the requests it can with Feast's own parts: Feast resolves the features
(its cached request context), the configured online store reads them (``online_read_async``:
Feast's Redis layout and decoding; concurrent requests' reads of the same features share one,
``batching``), Feast's value conversion makes them JSON-ready, and orjson writes the bytes,
in the order and shape Feast's handler writes them.

Anything it does not handle goes to Feast's handler unchanged, which then answers or refuses
exactly as Feast does: bad JSON or fields, unknown features or services, on-demand views,
request data, feature view versions, entity names instead of join keys, entity values of
another type, precomputed services, auth or metrics switched on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from feast import FeatureStore, FeatureView
from feast.feature_server_utils import _timestamp_to_str, _value_to_native
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from feature_store.serving.batching import CoalescedReads

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/get-online-features"
# the fields of Feast's GetOnlineFeaturesRequest this path answers; any other field falls back
REQUEST_FIELDS = frozenset({"entities", "features", "feature_service", "full_feature_names"})
EPOCH = "1970-01-01T00:00:00Z"  # Feast's timestamp of entity columns and rows it did not find
PRESENT, NOT_FOUND = "PRESENT", "NOT_FOUND"
INT64_RANGE = range(-(2**63), 2**63)
MAX_PLANS = 1024  # distinct (features, full_feature_names) requests remembered per registry
HEADERS = [(b"content-type", b"application/json")]
# value fields whose JSON form Feast's _value_to_native takes as is (the rest go through it)
PLAIN = frozenset({"int32_val", "int64_val", "string_val", "bool_val"})


def _is_int64(value: Any) -> bool:
    return type(value) is int and value in INT64_RANGE


def _is_string(value: Any) -> bool:
    return type(value) is str


# entity value types this path converts itself (the check, the Value field), as Feast's
# python_values_to_proto_values converts a JSON int or string; another type, or a value of
# another kind, falls back
ENTITY_VALUES: dict[ValueType, tuple[Callable[[Any], bool], str]] = {
    ValueType.INT64: (_is_int64, "int64_val"),
    ValueType.STRING: (_is_string, "string_val"),
}


@dataclass(frozen=True)
class ViewRead:
    """One feature view of a request: what to ask its online store, and the output columns."""

    view: FeatureView
    join_keys: frozenset[str]
    features: tuple[str, ...]  # as Feast asks online_read for them
    columns: tuple[tuple[str, str], ...]  # (feature, output name) that Feast keeps
    # the online store's read of these features, shared by requests of the same loop turn
    reads: CoalescedReads[EntityKeyProto, Any] = dataclasses.field(compare=False, hash=False)


@dataclass(frozen=True)
class Plan:
    """Feast's resolution of one request's features, reduced to what a read needs."""

    join_keys: frozenset[str]
    entity_types: dict[str, ValueType]
    views: tuple[ViewRead, ...]


class LeanOnlineFeatures:
    """ASGI wrapper of Feast's app: answers POST /get-online-features itself when it can,
    sends every other request (and the ones it cannot answer) to Feast's app."""

    def __init__(self, app: ASGIApp, store: FeatureStore) -> None:
        self.app = app
        self.store = store
        self.online_store = store._get_provider().online_store
        self.answered = 0  # requests this path answered (tests check it was used)
        self._plans: dict[tuple[Any, ...], Plan | None] = {}
        self._registry_stamp: datetime | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        try:
            payload = await self.answer(body) if _json_content(scope) else None
        except Exception:
            logger.warning("lean read failed, Feast's handler answers instead", exc_info=True)
            payload = None
        if payload is None:
            await self.app(scope, _replay(body, receive), send)
            return
        self.answered += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*HEADERS, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def answer(self, body: bytes) -> bytes | None:
        """The response body Feast would send, or None for Feast to answer."""
        if not _feast_handler_is_plain(self.store):
            return None
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(request) is not dict or not request.keys() <= REQUEST_FIELDS:
            return None
        entities = request.get("entities")
        full_names = request.get("full_feature_names", False)
        if type(entities) is not dict or not entities or type(full_names) is not bool:
            return None
        service = request.get("feature_service")
        if service is not None:
            if type(service) is not str or not service:
                return None
            key: tuple[Any, ...] = ("service", service, full_names)
        else:
            features = request.get("features", [])
            if type(features) is not list or not all(type(f) is str for f in features):
                return None
            key = ("features", tuple(features), full_names)
        plan = self._plan(key)
        if plan is None:
            return None
        entity_columns = _entity_columns(plan, entities)
        if entity_columns is None:
            return None
        return await self._read(plan, entity_columns)

    def _plan(self, key: tuple[Any, ...]) -> Plan | None:
        """Feast's resolution of these features, remembered until the registry refreshes.
        Once Feast's registry cache has expired (refreshes failing), nothing is remembered:
        each request resolves again, so Feast re-reads the registry or fails as it would."""
        registry = self.store.registry
        stamp = getattr(registry, "cached_registry_proto_created", None)
        is_valid = getattr(registry, "is_cache_valid", None)
        if stamp is None or is_valid is None or not is_valid():
            self._plans.clear()
            self._registry_stamp = None
            return self._resolve_or_none(key)
        if stamp != self._registry_stamp or len(self._plans) >= MAX_PLANS:
            self._plans.clear()
            self._registry_stamp = stamp
        if key not in self._plans:
            self._plans[key] = self._resolve_or_none(key)
        return self._plans[key]

    def _resolve_or_none(self, key: tuple[Any, ...]) -> Plan | None:
        try:
            return self._resolve(key)
        except Exception:  # Feast's handler raises the same, in its own error shape
            logger.debug("features %s: Feast's handler answers", key, exc_info=True)
            return None

    def _resolve(self, key: tuple[Any, ...]) -> Plan | None:
        from feast import utils

        kind, named, full_names = key
        features: Any = list(named)
        if kind == "service":
            features = self.store.registry.get_feature_service(
                named, self.store.project, allow_cache=True
            )
            if getattr(features, "precompute_online", False):
                return None
        (
            refs,
            on_demand_views,
            _entity_join_keys,
            entity_types,
            join_keys,
            grouped_refs,
            kept_names,
            request_data,
            entityless,
        ) = utils._get_cached_request_context(
            self.store.registry, self.store.project, features, full_names
        )
        if on_demand_views or request_data or entityless or not grouped_refs:
            return None
        if any("@" in ref for ref in refs):  # feature view versions
            return None
        views = []
        for view, requested in grouped_refs:
            if type(view) is not FeatureView:  # on-demand, stream views: Feast's handler
                return None
            if view.projection.join_key_map or getattr(view, "current_version_number", None):
                return None
            prefix = view.projection.name_to_use()
            columns = tuple(
                (name, output)
                for name in requested
                if (output := f"{prefix}__{name}" if full_names else name) in kept_names
            )
            view_keys = frozenset(column.name for column in view.entity_columns)
            reads = CoalescedReads(self._online_read(view, tuple(requested)))
            views.append(ViewRead(view, view_keys, tuple(requested), columns, reads))
        # join keys of the views read, with types this path converts; a request naming
        # another join key (Feast infers its type, then ignores it) falls back
        typed = {k: entity_types[k] for k in join_keys if entity_types.get(k) in ENTITY_VALUES}
        if any(not read.join_keys <= typed.keys() for read in views):
            return None
        return Plan(frozenset(typed), typed, tuple(views))

    def _online_read(
        self, view: FeatureView, features: tuple[str, ...]
    ) -> Callable[[list[EntityKeyProto]], Awaitable[list[Any]]]:
        """The configured online store's async read of these features (a fresh list each
        time: Feast's Redis store appends its timestamp field to the one it is given)."""
        online_store, config = self.online_store, self.store.config

        def read(keys: list[EntityKeyProto]) -> Awaitable[list[Any]]:
            return online_store.online_read_async(config, view, keys, list(features))

        return read

    async def _read(self, plan: Plan, entity_columns: dict[str, list[Any]]) -> bytes:
        rows = len(next(iter(entity_columns.values())))
        names = list(entity_columns)
        results: list[dict[str, list[Any]]] = []
        for values in entity_columns.values():
            results.append(
                {"values": values, "statuses": [PRESENT] * rows, "event_timestamps": [EPOCH] * rows}
            )
        reads = [self._read_view(read, plan.entity_types, entity_columns) for read in plan.views]
        columns = await asyncio.gather(*reads) if len(reads) > 1 else [await reads[0]]
        for view_columns in columns:
            for name, column in view_columns:
                names.append(name)
                results.append(column)
        return orjson.dumps({"results": results, "metadata": {"feature_names": names}})

    async def _read_view(
        self,
        read: ViewRead,
        entity_types: dict[str, ValueType],
        entity_columns: dict[str, list[Any]],
    ) -> list[tuple[str, dict[str, list[Any]]]]:
        keys = [k for k in entity_columns if k in read.join_keys]
        # one read per distinct entity, as Feast does; output rows point at theirs
        unique: dict[tuple[Any, ...], int] = {}
        row_entity = [
            unique.setdefault(entity, len(unique))
            for entity in zip(*(entity_columns[k] for k in keys), strict=True)
        ]
        fields = [ENTITY_VALUES[entity_types[k]][1] for k in keys]
        protos = []
        for entity in unique:
            proto = EntityKeyProto(join_keys=keys)
            for field, value in zip(fields, entity, strict=True):
                proto.entity_values.add(**{field: value})
            protos.append(proto)
        found = await read.reads(protos)
        entity_stamps = [EPOCH if ts is None else _feast_timestamp(ts) for ts, _ in found]
        rows = [data for _, data in found]
        # the same entity asked twice (rare) is read once; its rows copy the entity's cells
        spread = len(unique) != len(row_entity)
        out: list[tuple[str, dict[str, list[Any]]]] = []
        for feature, output in read.columns:
            cells = [None if data is None else data.get(feature) for data in rows]
            values = _natives(cells)
            statuses = [NOT_FOUND if v is None else PRESENT for v in cells]
            column = {"values": values, "statuses": statuses, "event_timestamps": entity_stamps}
            if spread:
                column = {name: [cells[i] for i in row_entity] for name, cells in column.items()}
            out.append((output, column))
        return out


def _natives(cells: list[ValueProto | None]) -> list[Any]:
    """What Feast's ``_value_to_native`` makes of each value (None for a missing one), the
    plain scalars read directly: the same values, without its chain of type tests per cell."""
    out: list[Any] = []
    append, finite = out.append, math.isfinite
    for cell in cells:
        if cell is None:
            append(None)
            continue
        which = cell.WhichOneof("val")
        if which in PLAIN:
            append(getattr(cell, which))
        elif which == "double_val" and finite(number := cell.double_val):
            append(number)
        else:
            append(_value_to_native(cell))
    return out


def _entity_columns(plan: Plan, entities: dict[str, Any]) -> dict[str, list[Any]] | None:
    """The request's entity columns when each is a join key of values of its type, all of
    one non-zero length; None otherwise (Feast converts, warns or refuses)."""
    rows = None
    for name, values in entities.items():
        if name not in plan.join_keys or type(values) is not list:
            return None
        if rows is None:
            rows = len(values)
        if len(values) != rows or not values:
            return None
        valid = ENTITY_VALUES[plan.entity_types[name]][0]
        if not all(map(valid, values)):
            return None
    if any(not read.join_keys <= entities.keys() for read in plan.views):
        return None  # Feast refuses a view's missing join key
    return entities


@functools.lru_cache(maxsize=4096)
def _feast_timestamp(moment: datetime) -> str:
    """As Feast writes a row's event timestamp: through a protobuf Timestamp. Remembered:
    a materialization stamps its rows with few distinct times, and the conversion took a
    twentieth of a one-entity request."""
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return _timestamp_to_str(stamp)


def _feast_handler_is_plain(store: FeatureStore) -> bool:
    """Feast's handler does nothing but read when no auth, metrics or MLflow logging is set up."""
    from feast import metrics
    from feast.permissions.security_manager import get_security_manager

    flags = metrics._config
    if flags.request or flags.online_features or flags.audit_logging:
        return False
    return get_security_manager() is None and store.mlflow is None


def _json_content(scope: Scope) -> bool:
    """Whether FastAPI would read the body as JSON: its content type is application/json or
    application/*+json (without one, or with another, Feast's handler refuses it)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            )
    return False


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then whatever the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
