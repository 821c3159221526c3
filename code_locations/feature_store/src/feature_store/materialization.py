"""Incremental materialization of the gold tables into Redis, one window per feature view.

Feast's incremental mode reads rows whose event time lies after the previous run's end. That
misses a gold row dbt rewrote in place (a late journal entry changes yesterday's averages but
not its event time), so a window here also reaches back to the oldest row dbt rewrote since
the previous run (``updated_at``). A view that is new, changed by this apply, or asked for in
full is materialized over all of its history, so no entity keeps an old shape in Redis.
Entities gone from gold (a deleted user, a user whose entries were all deleted) lose their row
in Redis after each run: Feast itself never deletes online rows.

The rows go from gold to Redis without Feast's pandas and proto detour (several times
faster): one COPY BINARY of each entity's newest version, its values encoded once per distinct
value, and HSETs of exactly the hash Feast's Redis store writes (online_layout), sent in bulk
with the store's key TTL; the window is then recorded in the registry as materialize() does.
An incremental window compares each entity's newest version with the version before it in
gold: an unchanged one is only restamped (its event time and TTL renewed), and only when
Redis still holds that previous version; everything else is written in full.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Set
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis
from feast import FeatureStore, FeatureView
from feast.infra.online_stores.redis import RedisOnlineStore

from feature_store import gold, online_layout

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
# dbt stamps updated_at when its transaction starts, which can precede our previous run's end
REWRITE_LOOKBACK = timedelta(hours=1)
# rows per buffer of commands sent to Redis: Redis executes one while the next is built
CHUNK = 2_000
BULK_CACHE = 200_000  # distinct encoded values kept between chunks (bounds memory)


@dataclass(frozen=True)
class Window:
    """What one feature view's materialization covered."""

    feature_view: str
    start: datetime
    end: datetime
    full: bool
    rows: int  # entities whose newest gold row Redis serves after the run
    removed: int = 0  # entities whose row was deleted from Redis: gone from gold
    written: int = 0  # of ``rows``, those written in full (the others only restamped)


def window_start(store: FeatureStore, view: FeatureView, full: bool) -> tuple[datetime, bool]:
    """Where this run starts for ``view``, and whether that is its whole history."""
    since = view.most_recent_end_time
    if full or since is None:
        return BEGINNING, True
    with gold.connect(store) as conn:
        rewritten = gold.oldest_rewritten(conn, view, since - REWRITE_LOOKBACK)
    return (min(since, rewritten) if rewritten is not None else since), False


def materialize(
    store: FeatureStore,
    views: Iterable[FeatureView],
    full_views: Iterable[str] = (),
    end: datetime | None = None,
    log: Callable[[str], None] = lambda message: None,
    client: redis.Redis | None = None,
) -> list[Window]:
    """Materialize each view over its window; Feast records each window in the registry."""
    end = end or datetime.now(UTC)
    full_views = set(full_views)
    windows = []
    for view in views:
        started = time.perf_counter()
        try:
            start, full = window_start(store, view, view.name in full_views)
            served, written = write_window(store, view, start, end, full)
        except psycopg.errors.UndefinedTable as error:
            raise RuntimeError(
                f"feature view {view.name} reads a gold table that does not exist ({error}). "
                "Materialize the transformation location's gold assets (dbt) first."
            ) from error
        copied = time.perf_counter()
        # both follow a successful write and touch different stores: one waits on Postgres
        # (the registry) while the other scans Redis
        with ThreadPoolExecutor(1, thread_name_prefix="registry") as pool:
            recorded = pool.submit(
                store.registry.apply_materialization, view, store.project, start, end
            )
            removed = remove_orphans(store, client, view, served) if client is not None else 0
            recorded.result()
        kind = "full" if full else "incremental"
        log(
            f"{view.name}: {kind} window {start:%Y-%m-%d %H:%M:%S} .. {end:%Y-%m-%d %H:%M:%S}, "
            f"{len(served)} entities served, {written} written in full, "
            f"{len(served) - written} restamped, {removed} removed (gone from gold); "
            f"gold to Redis {copied - started:.2f} s, registry and orphan scan "
            f"{time.perf_counter() - copied:.2f} s"
        )
        windows.append(Window(view.name, start, end, full, len(served), removed, written))
    return windows


def online_client(store: FeatureStore) -> tuple[redis.Redis, int | None]:
    """The Redis client of the store's online store (Feast's own), and its key TTL."""
    online = store._get_provider().online_store  # Feast has no public getter
    if not isinstance(online, RedisOnlineStore):
        raise TypeError(f"materialization writes to Redis; the online store is {type(online)}")
    config = store.config.online_store
    return online._get_client(config), config.key_ttl_seconds


def write_window(
    store: FeatureStore, view: FeatureView, start: datetime, end: datetime, full: bool
) -> tuple[set[int], int]:
    """Write each entity's newest row in [start, end]; (entities served, how many written in
    full)."""
    writer = _RowWriter(store, view)
    served: set[int] = set()
    written = 0
    with (
        _without_cycle_collection(),
        gold.connect(store) as conn,
        conn.cursor() as cursor,
        cursor.copy(gold.newest_versions_query(view, compare=not full), [start, end]) as copy,
        online_layout.CommandStream(writer.client) as writer.stream,
    ):
        copy.set_types(gold.copy_types(view, compare=not full))
        rows = copy.rows()
        while chunk := list(itertools.islice(rows, CHUNK)):
            served.update(row[0] for row in chunk)
            if not full:
                chunk = writer.restamp_unchanged(chunk)
            writer.write(chunk)
            written += len(chunk)
    return served, written


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector: the copy allocates a tuple per row and makes no cycles,
    so each collection it triggers would only walk the run's heap (Dagster, Feast) again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _RowWriter:
    """Rows of ``newest_versions_query`` into the hashes of Feast's Redis store."""

    def __init__(self, store: FeatureStore, view: FeatureView) -> None:
        self.client, self.ttl = online_client(store)
        self.project, self.view, self.join_key = store.project, view.name, gold.join_key(view)
        self.types = gold.feature_types(view)
        self.fields = [online_layout.feature_field(view.name, f.name) for f in view.features]
        self._stamps: dict[datetime, bytes] = {}  # versions share their build's as-of time
        self._bulks: dict[bytes, bytes] = {}  # encoded values, kept across chunks
        self.stream: online_layout.CommandStream | None = None

    def stamp(self, moment: datetime) -> bytes:
        raw = self._stamps.get(moment)
        if raw is None:
            raw = self._stamps[moment] = online_layout.encode_timestamp(moment)
        return raw

    def keys(self, entities: Iterable[int]) -> list[bytes]:
        return online_layout.entity_keys(self.project, self.join_key, list(entities))

    def restamp_unchanged(self, chunk: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Restamp the rows equal to their previous version; the rows still to write."""
        same = [j for j, row in enumerate(chunk) if not row[-1]]
        stale = online_layout.restamp_rows(
            self.client,
            self.keys(chunk[j][0] for j in same),
            self.view,
            [self.stamp(chunk[j][-2]) for j in same],
            [self.stamp(chunk[j][1]) for j in same],
            self.ttl,
        )
        done = set(same) - {same[i] for i in stale}
        return [row for j, row in enumerate(chunk) if j not in done]

    def write(self, chunk: list[tuple[Any, ...]]) -> None:
        assert self.stream is not None, "write() inside write_window's CommandStream"
        if len(self._bulks) > BULK_CACHE:
            self._bulks.clear()
        self.stream.send(
            *online_layout.pack_rows(
                self.keys(row[0] for row in chunk),
                self.view,
                [self.stamp(row[1]) for row in chunk],
                self.fields,
                [
                    online_layout.encode_values([row[2 + i] for row in chunk], value_type)
                    for i, value_type in enumerate(self.types)
                ],
                self.ttl,
                self._bulks,
            )
        )


def remove_orphans(
    store: FeatureStore, client: redis.Redis, view: FeatureView, written: Set[int] = frozenset()
) -> int:
    """Delete the Redis rows of ``view`` whose entity has no row in gold any more
    (``written``: entities this run just wrote from gold, present without asking)."""
    key = gold.join_key(view)
    served = online_layout.view_entities(client, store.project, view.name, key, skip=written)
    if not served:
        return 0
    with gold.connect(store) as conn:
        orphans = sorted(set(served) - gold.present_entities(conn, view, served))
    online_layout.remove_rows(
        client, store.project, view.name, key, [f.name for f in view.features], orphans
    )
    return len(orphans)
