"""Feast's Redis online store, except that a row Redis no longer holds reads as NOT_FOUND.

Feast's own store answers a missing hash (an expired key, a deleted entity) with empty values
marked PRESENT at the epoch, so a reader cannot tell "no value" from "a null value". This one
returns no row, which Feast reports as NOT_FOUND. feature_store.yaml names it by class path.
"""

from __future__ import annotations

from collections.abc import ByteString, Sequence
from datetime import datetime
from typing import Literal

from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

STORE_TYPE = "feature_store.online_store.ExpiringRedisOnlineStore"


class ExpiringRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """The Redis store's settings (key_ttl_seconds: keys expire unless rewritten in time)."""

    type: Literal["feature_store.online_store.ExpiringRedisOnlineStore"] = STORE_TYPE  # type: ignore[assignment]


class ExpiringRedisOnlineStore(RedisOnlineStore):
    def _get_features_for_entity(
        self,
        values: Sequence[ByteString | None],
        feature_view: str,
        requested_features: list[str],
    ) -> tuple[datetime | None, dict[str, ValueProto] | None]:
        stamps = dict(zip(requested_features, values, strict=True))
        if stamps.get(f"_ts:{feature_view}") is None:  # this view has no row for the entity
            return None, None
        return super()._get_features_for_entity(values, feature_view, requested_features)
