"""One endpoint's load from the upstream into raw: migrate if behind, stage, merge.

The cursor re-reads a look-back window behind itself on every run (``lookback_seconds``,
five minutes by default). Upstream rows are stamped when their transaction writes them but
become visible when it commits: a long transaction, or a writer whose clock runs a little
behind, commits rows stamped before the newest row we already read. Five minutes covers
request-scoped transactions and clock skew many times over, while the re-read rows cost one
page at the usual rates and change nothing (raw already holds those versions; see
raw_tables). A row that commits later than the window behind its own stamp is still missed:
widen the window for such an upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from data_platform.resources import PostgresResource

from ingestion.journal_api import JournalApiResource
from ingestion.raw_tables import (
    MergeResult,
    Staged,
    Timeouts,
    append_and_stage,
    drop_staging,
    merge_records,
    merge_tombstones,
    migrate,
    read_cursor,
    stage,
)
from ingestion.records import RECORD_TYPES, Record, Rejected, Tombstone


@dataclass(frozen=True)
class LoadOptions:
    lookback_seconds: float = 300.0
    quarantine: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class LoadResult:
    fetched: int
    rejected: int
    updated_since: datetime | None  # where this load started reading (cursor - look-back)
    cursor: datetime | None  # the cursor after the merge
    merge: MergeResult

    appended: int = 0  # of the inserted rows, those COPYed straight into raw (new ids)

    @property
    def unchanged(self) -> int:
        return self.fetched - self.merge.inserted - self.merge.updated


def ingest_endpoint(
    postgres: PostgresResource,
    journal_api: JournalApiResource,
    record_type: type[Record] | type[Tombstone],
    options: LoadOptions = LoadOptions(),
    log: Callable[[str], None] = lambda message: None,
    schema: tuple[type[Record], ...] = RECORD_TYPES,
) -> LoadResult:
    """Fetch what changed since the cursor (minus the look-back) and merge it, all or nothing."""
    with postgres.connect(autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")  # a timestamp without offset means UTC
        conn.execute("SET temp_buffers = '256MB'")  # the staging table stays in memory
        applied = migrate(conn, schema)  # one read when the schema is current
        if applied:
            log(f"schema raw migrated: {'; '.join(applied)}")
        cursor = read_cursor(conn, record_type.endpoint)
        since = None if cursor is None else cursor - timedelta(seconds=options.lookback_seconds)
        log(f"fetching /api/v1/{record_type.endpoint} updated since {since} (cursor {cursor})")
        rejected: list[Rejected] | None = [] if options.quarantine else None
        pages = journal_api.fetch(
            record_type,
            since,
            on_retry=log,
            on_rejected=rejected.extend if rejected is not None else None,
        )
        staged: Staged | None = None
        try:
            if record_type is Tombstone or rejected is not None:
                staged = stage(conn, record_type, pages, rejected)
                merged = _merge(conn, record_type, staged, options)
            else:
                with conn.transaction():  # the appended rows commit with the merge, or never
                    staged = append_and_stage(conn, record_type, pages, options.timeouts)  # type: ignore[arg-type]
                    merged = _merge(conn, record_type, staged, options)
        finally:
            if staged is not None:
                drop_staging(conn, staged)
        after = read_cursor(conn, record_type.endpoint)
    return LoadResult(
        staged.fetched, len(staged.rejected), since, after, merged, appended=staged.appended
    )


def _merge(
    conn: Any,
    record_type: type[Record] | type[Tombstone],
    staged: Staged,
    options: LoadOptions,
) -> MergeResult:
    if not staged.fetched and not staged.rejected:
        return MergeResult()  # nothing new: no lock taken, the cursor stays
    if record_type is Tombstone:
        return merge_tombstones(conn, staged, options.timeouts)
    return merge_records(conn, record_type, staged, options.timeouts)  # type: ignore[arg-type]


def describe(result: LoadResult) -> dict[str, Any]:
    """The figures of a load, for logs and asset metadata."""
    merge = result.merge
    return {
        "fetched": result.fetched,
        "inserted": merge.inserted,
        "appended": result.appended,
        "updated": merge.updated,
        "rejected": result.rejected,
        "updated_since": str(result.updated_since),
        "cursor": str(result.cursor),
        "merge_lock_wait_seconds": round(merge.lock_wait_seconds, 3),
        "merge_seconds": round(merge.merge_seconds, 3),
    }
