"""Deletions upstream reach raw: rows go, raw.deletions says what went, nothing comes back."""

import psycopg
from ingestion.loads import ingest_endpoint
from ingestion.raw_tables import Timeouts, append_and_stage, merge_records, stage
from ingestion.records import JournalEntry


def rows(warehouse, query, *params):
    with psycopg.connect(warehouse.conninfo()) as conn:
        return conn.execute(query, params).fetchall()


def test_a_deleted_user_and_entry_leave_raw_and_are_recorded(
    start_journal_api, ingest, warehouse, assert_raw_is_upstream, metadata, client_for
):
    api = start_journal_api(users=20, entries=500)
    assert ingest(api).success
    user_entries = rows(
        warehouse,
        "SELECT id, user_id, created_at FROM raw.journal_entries WHERE user_id = 3 ORDER BY id",
    )
    assert user_entries  # the user has entries to lose
    other = rows(
        warehouse,
        "SELECT id, user_id, created_at FROM raw.journal_entries "
        "WHERE user_id <> 3 ORDER BY id LIMIT 1",
    )[0]

    tombstones = api.delete("users", 3)
    assert [(t["entity"], t["id"]) for t in tombstones] == [
        *[("journal_entries", e[0]) for e in user_entries],
        ("users", 3),
    ]
    api.delete("journal_entries", other[0])
    result = ingest(api)
    assert result.success
    deletions = metadata(result, "deletions")
    assert (deletions["deleted_users"], deletions["deleted_entries"]) == (1, len(user_entries) + 1)

    assert rows(warehouse, "SELECT id FROM raw.users WHERE id = 3") == []
    assert rows(warehouse, "SELECT id FROM raw.journal_entries WHERE user_id = 3") == []
    recorded = rows(
        warehouse,
        "SELECT entity, id, user_id, played_at FROM raw.deletions ORDER BY entity, id",
    )
    assert recorded == [
        *sorted(("journal_entries", i, u, played) for i, u, played in [*user_entries, other]),
        ("users", 3, 3, None),
    ]
    assert_raw_is_upstream(api)

    # the look-back re-reads the tombstones: nothing changes, not even ingested_at
    before = rows(warehouse, "SELECT * FROM raw.deletions ORDER BY entity, id")
    assert ingest(api).success
    assert rows(warehouse, "SELECT * FROM raw.deletions ORDER BY entity, id") == before


def test_a_row_recreated_after_its_deletion_loads_again(
    start_journal_api, ingest, warehouse, assert_raw_is_upstream
):
    api = start_journal_api(users=5, entries=100)
    assert ingest(api).success
    api.delete("journal_entries", 42)
    assert ingest(api).success
    assert rows(warehouse, "SELECT id FROM raw.journal_entries WHERE id = 42") == []

    api.restore("journal_entries", 42)  # newer updated_at than its deleted_at
    assert ingest(api).success
    assert rows(warehouse, "SELECT id FROM raw.journal_entries WHERE id = 42") == [(42,)]
    assert_raw_is_upstream(api)


def test_an_older_version_never_resurrects_a_deleted_row(
    start_journal_api, ingest, warehouse, client_for
):
    """A page read before a deletion, merged after it (a slow concurrent run) loads nothing."""
    api = start_journal_api(users=5, entries=100)
    assert ingest(api).success
    client = client_for(api)
    stale_pages = list(client.fetch(JournalEntry))  # read now: entry 42 is still there
    api.delete("journal_entries", 42)
    assert ingest(api).success

    with warehouse.connect(autocommit=True) as conn:
        staged = stage(conn, JournalEntry, stale_pages)
        merged = merge_records(conn, JournalEntry, staged, Timeouts())
    assert merged.inserted == 0 and merged.updated == 0
    assert rows(warehouse, "SELECT id FROM raw.journal_entries WHERE id = 42") == []


def test_tombstones_of_rows_never_loaded_are_recorded(start_journal_api, warehouse, client_for):
    api = start_journal_api(users=5, entries=100)
    api.advance(new_entries=1)
    api.delete("journal_entries", 101)  # created and deleted between two runs
    from ingestion.records import Tombstone

    ingest_endpoint(warehouse, client_for(api), Tombstone)
    assert rows(warehouse, "SELECT entity, id, user_id FROM raw.deletions") == [
        ("journal_entries", 101, None)
    ]


def test_a_new_id_deleted_before_it_loaded_is_never_appended(
    start_journal_api, ingest, warehouse, client_for
):
    """Ids above raw's max go straight into raw, unless raw.deletions holds them."""
    api = start_journal_api(users=5, entries=100)
    assert ingest(api).success
    api.advance(new_entries=2)  # entries 101 and 102
    stale_pages = list(client_for(api).fetch(JournalEntry))  # read now: 101 is still there
    api.delete("journal_entries", 101)
    assert ingest(api, selection=["deletions"]).success  # 101's tombstone, above raw's max id

    with warehouse.connect(autocommit=True) as conn, conn.transaction():
        staged = append_and_stage(conn, JournalEntry, stale_pages, Timeouts())
        merged = merge_records(conn, JournalEntry, staged, Timeouts())
    assert staged.appended == 1  # 102; 101 went through staging, where its deletion is seen
    assert merged.inserted == 1 and merged.updated == 0
    assert rows(warehouse, "SELECT id FROM raw.journal_entries WHERE id > 100") == [(102,)]
