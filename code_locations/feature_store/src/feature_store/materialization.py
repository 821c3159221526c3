"""Incremental materialization of the gold tables into Redis, one window per feature view.

Feast's incremental mode reads rows whose event time lies after the previous run's end. That
misses a gold row dbt rewrote in place (a late journal entry changes yesterday's averages but
not its event time), so a window here also reaches back to the oldest row dbt rewrote since
the previous run (``updated_at``). A view that is new, changed by this apply, or asked for in
full is materialized over all of its history, so no entity keeps an old shape in Redis.
Entities gone from gold (a deleted user, a user whose entries were all deleted) lose their row
in Redis after each run: Feast itself never deletes online rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import redis
from feast import FeatureStore, FeatureView

from feature_store import gold, online_layout

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
# dbt stamps updated_at when its transaction starts, which can precede our previous run's end
REWRITE_LOOKBACK = timedelta(hours=1)


@dataclass(frozen=True)
class Window:
    """What one feature view's materialization covered."""

    feature_view: str
    start: datetime
    end: datetime
    full: bool
    rows: int  # entities written to Redis: the newest gold row of each
    removed: int = 0  # entities whose row was deleted from Redis: gone from gold


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
        try:
            start, full = window_start(store, view, view.name in full_views)
            with gold.connect(store) as conn:
                rows = gold.entities_between(conn, view, start, end)
        except psycopg.errors.UndefinedTable as error:
            raise RuntimeError(
                f"feature view {view.name} reads a gold table that does not exist ({error}). "
                "Materialize the transformation location's gold assets (dbt) first."
            ) from error
        kind = "full" if full else "incremental"
        log(
            f"{view.name}: {kind} window {start:%Y-%m-%d %H:%M:%S} .. {end:%Y-%m-%d %H:%M:%S}, "
            f"{rows} entities to write"
        )
        store.materialize(start, end, feature_views=[view.name])
        removed = remove_orphans(store, client, view) if client is not None else 0
        if removed:
            log(f"{view.name}: removed the rows of {removed} entities gone from gold")
        windows.append(Window(view.name, start, end, full, rows, removed))
    return windows


def remove_orphans(store: FeatureStore, client: redis.Redis, view: FeatureView) -> int:
    """Delete the Redis rows of ``view`` whose entity has no row in gold any more."""
    key = gold.join_key(view)
    served = online_layout.view_entities(client, store.project, view.name, key)
    if not served:
        return 0
    with gold.connect(store) as conn:
        orphans = sorted(set(served) - gold.present_entities(conn, view, served))
    online_layout.remove_rows(
        client, store.project, view.name, key, [f.name for f in view.features], orphans
    )
    return len(orphans)
