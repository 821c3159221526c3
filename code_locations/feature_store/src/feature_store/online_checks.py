"""What the asset checks measure: how fresh Redis is, and whether it agrees with gold.

Both read Redis directly (``online_layout``), not through Feast's SDK, so they check the
bytes the feature server will serve rather than Feast's view of them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from feast import FeatureStore, FeatureView

from feature_store import gold, online_layout


@dataclass
class Freshness:
    view: str
    oldest_served: datetime | None
    newest_served: datetime | None
    served_rows: int
    checked_at: datetime

    @property
    def lag(self) -> timedelta | None:
        """How old the oldest served row is: one stale entity is enough to fail the SLA."""
        return None if self.oldest_served is None else self.checked_at - self.oldest_served


def freshness(store: FeatureStore, client: redis.Redis, view: str) -> Freshness:
    """The oldest and newest event times Redis serves for ``view`` (a SCAN of the project).

    Every build writes a row for its own date for every entity, so after a healthy run all
    served rows are about as old as that run; the oldest one shows what a reader may get.
    """
    oldest: datetime | None = None
    newest: datetime | None = None
    count = 0
    for moment in online_layout.served_timestamps(client, store.project, view):
        count += 1
        oldest = moment if oldest is None else min(oldest, moment)
        newest = moment if newest is None else max(newest, moment)
    return Freshness(view, oldest, newest, count, datetime.now(UTC))


@dataclass
class Mismatch:
    view: str
    entity: int
    feature: str
    online: Any
    gold: Any

    def __str__(self) -> str:
        return (
            f"{self.view} {self.entity}: {self.feature} is {self.online!r} in Redis, "
            f"{self.gold!r} in gold"
        )


@dataclass
class Consistency:
    sampled: dict[str, int] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    never_materialized: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches and not self.never_materialized


def _equal(online: Any, offline: Any) -> bool:
    if isinstance(online, float) and isinstance(offline, float):
        return online == offline or (math.isnan(online) and math.isnan(offline))
    return online == offline


def _compare_view(
    store: FeatureStore, client: redis.Redis, view: FeatureView, sample_size: int
) -> tuple[int, list[Mismatch]]:
    """Entities sampled from gold and from Redis: a gold row missing online fails, and so
    does an online row whose entity gold no longer has (an orphan)."""
    horizon = view.most_recent_end_time
    assert horizon is not None
    key = gold.join_key(view)
    served = online_layout.view_entities(client, store.project, view.name, key)
    from_redis = random.sample(served, min(sample_size, len(served)))
    with gold.connect(store) as conn:
        entities = sorted(
            set(gold.sample_entities(conn, view, sample_size, horizon)) | set(from_redis)
        )
        expected = gold.latest_rows(conn, view, entities, horizon)
    names = [f.name for f in view.features]
    fields = [online_layout.timestamp_field(view.name)]
    fields += [online_layout.feature_field(view.name, name) for name in names]
    with client.pipeline(transaction=False) as pipe:
        for entity in entities:
            pipe.hmget(online_layout.entity_key(store.project, key, entity), fields)
        stored = pipe.execute()
    mismatches = []
    timestamp_column = gold.timestamp_column(view)
    for entity, raw in zip(entities, stored, strict=True):
        served_at = online_layout.decode_timestamp(raw[0])
        row = expected.get(entity)
        if row is None:
            mismatches.append(Mismatch(view.name, entity, "(row)", "present", None))
            continue
        if served_at is None:
            mismatches.append(Mismatch(view.name, entity, "(row)", None, "present"))
            continue
        if served_at != row[timestamp_column]:
            mismatches.append(
                Mismatch(view.name, entity, timestamp_column, served_at, row[timestamp_column])
            )
        for name, value in zip(names, raw[1:], strict=True):
            online = online_layout.decode_value(value)
            if not _equal(online, row[name]):
                mismatches.append(Mismatch(view.name, entity, name, online, row[name]))
    return len(entities), mismatches


def consistency(
    store: FeatureStore, client: redis.Redis, views: list[FeatureView], sample_size: int
) -> Consistency:
    """For a random sample of each view's entities, Redis must hold gold's newest row.

    Newest as of the view's last materialization: rows dbt wrote since then are not due yet.
    """
    result = Consistency()
    for view in views:
        if view.most_recent_end_time is None:
            result.never_materialized.append(view.name)
            continue
        sampled, mismatches = _compare_view(store, client, view, sample_size)
        result.sampled[view.name] = sampled
        result.mismatches.extend(mismatches)
    return result
