"""Raw keeps the version it read last, even when the upstream's updated_at goes backwards.

The development upstream's late commits stamp a new version in the past (a transaction that
began earlier and committed later): its updated_at can lie before the version it replaces.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from ingestion.journal_api import JournalApiResource
from ingestion.loads import LoadOptions, ingest_endpoint
from ingestion.raw_tables import Timeouts, merge_records, stage
from ingestion.records import JournalEntry, Page, User


def entry(warehouse, entry_id):
    with psycopg.connect(warehouse.conninfo()) as conn:
        return conn.execute(
            "SELECT user_id, created_at, updated_at, _ingested_at FROM raw.journal_entries "
            "WHERE id = %s",
            [entry_id],
        ).fetchone()


def test_a_version_stamped_before_the_one_in_raw_replaces_it(
    start_journal_api, ingest, warehouse, metadata, assert_raw_is_upstream
):
    api = start_journal_api(users=5, entries=100)
    api.advance(new_entries=10)  # the upstream's clock runs 10 s past its base rows
    assert ingest(api).success
    newer = api.move(42, days=1)  # stamped now
    assert ingest(api).success
    # committed after it, stamped 60 s before it: the upstream now serves this version
    late = api.move(42, days=-1, late_seconds=60)
    assert late["updated_at"] < newer["updated_at"]

    result = ingest(api)
    assert result.success
    assert metadata(result, "journal_entries")["updated"] == 1
    assert_raw_is_upstream(api)  # before read-time ordering: "stale versions of [42]"
    stored = entry(warehouse, 42)

    again = ingest(api)  # the look-back re-reads the late version: nothing is written
    assert again.success
    assert metadata(again, "journal_entries")["updated"] == 0
    assert entry(warehouse, 42) == stored


class InterleavedUpstream(JournalApiResource):
    """The client, running ``BETWEEN`` after it has read every page and before it returns."""

    def fetch(self, record_type: Any, *args: Any, **kwargs: Any) -> Iterator[list[Any]]:
        pages = list(super().fetch(record_type, *args, **kwargs))
        for step in BETWEEN:
            step()
        yield from pages


BETWEEN: list[Callable[[], None]] = []


def test_a_run_that_read_earlier_but_merges_later_does_not_overwrite_a_newer_read(
    start_journal_api, warehouse, client_for, assert_raw_is_upstream
):
    """Run A reads entry 42, then run B reads its late-committed newer version (an older
    stamp) and merges; A merges last. Through the real load path, with A staging outside
    any lock (quarantine on), so B runs entirely between A's fetch and A's merge."""
    api = start_journal_api(users=5, entries=100)
    api.advance(new_entries=10)
    api.move(42, days=1)
    client = client_for(api)
    for record_type in (User, JournalEntry):
        ingest_endpoint(warehouse, client, record_type)
    b_results = []

    def run_b() -> None:
        api.move(42, days=-1, late_seconds=60)  # committed now, stamped 60 s back
        b_results.append(ingest_endpoint(warehouse, client, JournalEntry))

    BETWEEN[:] = [run_b]
    try:
        a = ingest_endpoint(
            warehouse,
            InterleavedUpstream(base_url=api.url, page_size=100),
            JournalEntry,
            LoadOptions(quarantine=True),
        )
    finally:
        BETWEEN.clear()
    (b,) = b_results
    assert (b.merge.updated, a.merge.updated, a.merge.inserted) == (1, 0, 0)
    assert_raw_is_upstream(api)  # A's earlier read did not win, though its stamp is newer


def test_within_one_fetch_the_version_read_last_wins(start_journal_api, warehouse, client_for):
    api = start_journal_api(users=5, entries=100)
    ingest_endpoint(warehouse, client_for(api), JournalEntry)
    (current,) = [r for page in client_for(api).fetch(JournalEntry) for r in page if r.id == 7]
    first = datetime.now(UTC)
    newer_stamp = current.__class__(
        **{**{f: getattr(current, f) for f in current.__struct_fields__}, "score": 1}
    )
    older_stamp = current.__class__(
        **{
            **{f: getattr(current, f) for f in current.__struct_fields__},
            "score": 2,
            "updated_at": "2026-06-01T00:00:00Z",
        }
    )
    pages = [Page([newer_stamp], first), Page([older_stamp], first + timedelta(seconds=1))]
    with warehouse.connect(autocommit=True) as conn:
        staged = stage(conn, JournalEntry, pages)
        merged = merge_records(conn, JournalEntry, staged, Timeouts())
        score = conn.execute("SELECT score FROM raw.journal_entries WHERE id = 7").fetchone()
    assert merged.updated == 1
    assert score == (2,)  # read last, though stamped a month earlier


@pytest.mark.parametrize("load_between", [True, False], ids=["load-between", "one-load"])
def test_a_row_recreated_with_a_stamp_before_its_deletion_loads_again(
    start_journal_api, ingest, warehouse, assert_raw_is_upstream, load_between
):
    """Deleted, re-created, then a late-committed version stamped before the deletion: the
    upstream serves that row, so raw holds it. In one load too: the run reads the tombstone
    feed before the rows, so the re-created version is read after its tombstone."""
    api = start_journal_api(users=5, entries=100)
    api.advance(new_entries=30)
    assert ingest(api).success
    api.delete("journal_entries", 42)
    if load_between:
        assert ingest(api).success  # the tombstone is read: 42 leaves raw
        assert entry(warehouse, 42) is None
    api.restore("journal_entries", 42)
    api.move(42, days=1, late_seconds=120)  # re-created, then a version stamped before the delete
    assert ingest(api).success
    with psycopg.connect(warehouse.conninfo()) as conn:
        (deleted_at,) = conn.execute(
            "SELECT deleted_at FROM raw.deletions WHERE id = 42"
        ).fetchone()
    stored = entry(warehouse, 42)
    assert stored is not None and stored[2] < deleted_at  # read after the tombstone: it stays
    assert_raw_is_upstream(api)


def test_a_late_version_then_a_deletion_removes_the_row(
    start_journal_api, ingest, warehouse, assert_raw_is_upstream
):
    api = start_journal_api(users=5, entries=100)
    api.advance(new_entries=30)
    api.move(42, days=1)
    assert ingest(api).success
    api.move(42, days=-1, late_seconds=60)
    assert ingest(api).success  # the late version, read
    api.delete("journal_entries", 42)
    assert ingest(api).success
    assert entry(warehouse, 42) is None
    assert_raw_is_upstream(api)


def test_the_read_time_column_arrives_by_migration(start_journal_api, ingest, warehouse, metadata):
    """A raw table from before read-time ordering gets _fetched_at once; its rows a value."""
    api = start_journal_api(users=5, entries=100)
    assert ingest(api).success
    with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:
        for table in ("users", "game_types", "journal_entries", "deletions"):
            conn.execute(f"ALTER TABLE raw.{table} DROP COLUMN _fetched_at")
        conn.execute("DELETE FROM raw.schema_migrations")
    again = ingest(api)
    assert again.success
    assert metadata(again, "journal_entries")["updated"] == 0  # re-read: nothing rewritten
    with psycopg.connect(warehouse.conninfo()) as conn:
        (statements,) = conn.execute("SELECT statements FROM raw.schema_migrations").fetchone()
        missing = conn.execute(
            "SELECT count(*) FROM raw.journal_entries WHERE _fetched_at IS NULL"
        ).fetchone()
    assert statements.count("ADD COLUMN _fetched_at") == 4
    assert missing == (0,)
