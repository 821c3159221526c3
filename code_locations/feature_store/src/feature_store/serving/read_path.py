"""A lean POST /get-online-features: Feast's request and response, fewer steps between them.

Feast's handler validates with pydantic, hops to a thread for the feature service, reads, then
hops to a thread again to turn the response protobuf into a dict, formatting the timestamp of
every cell on the way (for 100 users that conversion alone costs more than the Redis read).
This path answers the requests it can with Feast's own parts: Feast resolves the features
(its cached request context), the configured online store reads them (its ``stored_reader``:
Feast's Redis keys and fields, the stored bytes; concurrent requests' reads of the same
features share one, ``batching``), each distinct stored value is parsed and converted to JSON
once by Feast's own functions (``_native``: remembered, since values repeat across users and
requests), and orjson writes the bytes, in the order and shape Feast's handler writes them.

Anything it does not handle goes to Feast's handler unchanged, which then answers or refuses
exactly as Feast does: bad JSON or fields, unknown features or services, on-demand views,
request data, feature view versions, entity names instead of join keys, views not keyed by
one INT64 join key, entity values of another type, precomputed services, auth or metrics
switched on, an online store without ``stored_reader``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from feast import FeatureStore, FeatureView
from feast.feature_server_utils import _timestamp_to_str, _value_to_native
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from feature_store.online_store import StoredRow, feast_datetime
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
# distinct stored values (and, apart, timestamps) remembered with their JSON form, per worker:
# at most about 13 MiB (65,536 distinct doubles, measured); a view's small values (counts,
# game types, rounded means) repeat across users
NATIVES_REMEMBERED = 1 << 16


def _is_int64(value: Any) -> bool:
    """A JSON value Feast's python_values_to_proto_values turns into an INT64 entity value."""
    return type(value) is int and value in INT64_RANGE


@dataclass(frozen=True)
class ViewRead:
    """One feature view of a request: its join key, and where each output column lies in the
    stored rows its online store reads."""

    join_key: str  # the view's only join key, INT64
    columns: tuple[tuple[int, str], ...]  # (place in the stored row, output name) Feast keeps
    # the online store's read of the view's requested features, shared by the requests of
    # one loop turn
    reads: CoalescedReads[int, StoredRow] = dataclasses.field(compare=False, hash=False)


@dataclass(frozen=True)
class Plan:
    """Feast's resolution of one request's features, reduced to what a read needs."""

    join_keys: frozenset[str]
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
        if not _entities_fit(plan, entities):
            return None
        return await self._read(plan, entities)

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
            _join_keys,
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
        stored_reader = getattr(self.online_store, "stored_reader", None)
        if stored_reader is None:  # another online store: Feast's handler reads it
            return None
        views = []
        for view, requested in grouped_refs:
            if type(view) is not FeatureView:  # on-demand, stream views: Feast's handler
                return None
            if view.projection.join_key_map or getattr(view, "current_version_number", None):
                return None
            keys = [column.name for column in view.entity_columns]
            if len(keys) != 1 or entity_types.get(keys[0]) != ValueType.INT64:
                return None
            read = stored_reader(self.store.config, view, keys[0], requested)
            if read is None:
                return None
            prefix = view.projection.name_to_use()
            columns = tuple(
                (place, output)
                for place, name in enumerate(requested)
                if (output := f"{prefix}__{name}" if full_names else name) in kept_names
            )
            views.append(ViewRead(keys[0], columns, CoalescedReads(read)))
        # a request must name exactly these join keys: another (Feast infers its type, then
        # ignores it) falls back
        return Plan(frozenset(read.join_key for read in views), tuple(views))

    async def _read(self, plan: Plan, entity_columns: dict[str, list[Any]]) -> bytes:
        rows = len(next(iter(entity_columns.values())))
        names = list(entity_columns)
        results: list[dict[str, list[Any]]] = []
        for values in entity_columns.values():
            results.append(
                {"values": values, "statuses": [PRESENT] * rows, "event_timestamps": [EPOCH] * rows}
            )
        reads = [_read_view(read, entity_columns[read.join_key]) for read in plan.views]
        columns = await asyncio.gather(*reads) if len(reads) > 1 else [await reads[0]]
        for view_columns in columns:
            for name, column in view_columns:
                names.append(name)
                results.append(column)
        return orjson.dumps({"results": results, "metadata": {"feature_names": names}})


async def _read_view(read: ViewRead, entities: list[int]) -> list[tuple[str, dict[str, list[Any]]]]:
    """The view's output columns for these entities, as Feast's handler writes them."""
    distinct = list(dict.fromkeys(entities))  # one read per distinct entity, as Feast does
    rows = await read.reads(distinct)
    if len(distinct) != len(entities):  # the same entity asked twice (rare): its row again
        row_of = dict(zip(distinct, rows, strict=True))
        rows = [row_of[entity] for entity in entities]
    fields = list(zip(*rows, strict=True))  # each stored field across the rows
    stamps = fields[-1]  # None: the view has no row for the entity
    statuses = [NOT_FOUND if stamp is None else PRESENT for stamp in stamps]
    times = list(map(_event_time, stamps))
    return [
        (
            output,
            {
                "values": list(map(_native, fields[place])),
                "statuses": statuses,
                "event_timestamps": times,
            },
        )
        for place, output in read.columns
    ]


@functools.lru_cache(maxsize=NATIVES_REMEMBERED)
def _native(raw: bytes | None) -> Any:
    """What Feast's handler writes for a stored Value: its Redis store reads a missing
    field, or an empty one, as an empty Value (None); ``_value_to_native`` converts it.
    Remembered: the same bytes always give the same value (a list value is shared by the
    responses, which only serialize it)."""
    native = _value_to_native(ValueProto.FromString(raw) if raw else ValueProto())
    return _as_feast_writes(native) if type(native) in (float, list) else native


def _as_feast_writes(native: Any) -> Any:
    """``native`` as Feast's handler writes it (Starlette's JSONResponse: the json module,
    compact), where orjson writes it otherwise: a float in exponent form (``1e-08``, not
    ``1e-8``); ``orjson.Fragment`` puts those bytes in the response as they are."""
    text = json.dumps(native, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return native if orjson.dumps(native) == text.encode() else orjson.Fragment(text)


@functools.lru_cache(maxsize=NATIVES_REMEMBERED)
def _event_time(raw: bytes | None) -> str:
    """A row's stored timestamp as Feast writes it: through its Redis store's datetime,
    then a protobuf Timestamp; the epoch for a row not found. Remembered: a materialization
    stamps its rows with few distinct times."""
    if raw is None:
        return EPOCH
    stamp = Timestamp()
    stamp.FromDatetime(feast_datetime(raw))
    return _timestamp_to_str(stamp)


def _entities_fit(plan: Plan, entities: dict[str, Any]) -> bool:
    """Whether the request's entities are the plan's join keys, each a list of INT64 values,
    all of one non-zero length (else Feast converts, warns or refuses)."""
    if entities.keys() != plan.join_keys:
        return False
    rows = None
    for values in entities.values():
        if type(values) is not list or not values or rows not in (None, len(values)):
            return False
        rows = len(values)
        if not all(map(_is_int64, values)):
            return False
    return True


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
