"""Loads into a real Postgres: counts, contents, idempotency and incremental runs."""

import httpx
import psycopg


def test_ingest_lands_every_record_in_raw(start_journal_api, ingest, warehouse, raw_counts):
    api = start_journal_api(users=50, entries=2_000)
    result = ingest(api)
    assert result.success
    assert raw_counts() == {"raw.users": 50, "raw.game_types": 12, "raw.journal_entries": 2_000}
    with psycopg.connect(warehouse.conninfo()) as conn:
        first = conn.execute(
            "SELECT id, user_id, game_type_id, duration_minutes, score, mood, created_at "
            "FROM raw.journal_entries ORDER BY id LIMIT 1"
        ).fetchone()
        cursors = dict(conn.execute("SELECT endpoint, rows_loaded FROM raw.ingestion_cursors"))
    upstream = api.health()["counts"]
    assert cursors == upstream  # one cursor per endpoint, and it saw every row
    assert first[0] == 1 and 1 <= first[5] <= 5 and first[6].year == 2026


def test_ingest_twice_changes_nothing(start_journal_api, ingest, raw_snapshot):
    api = start_journal_api(users=30, entries=1_500)
    assert ingest(api).success
    before = raw_snapshot()
    again = ingest(api)
    assert again.success
    assert raw_snapshot() == before
    metadata = {
        key.path[-1]: event.materialization.metadata
        for event in again.get_asset_materialization_events()
        for key in [event.asset_key]
    }
    # the second run re-reads only the rows at the cursor, and writes none of them
    assert metadata["journal_entries"]["fetched"].value == 1
    assert metadata["journal_entries"]["inserted"].value == 0
    assert metadata["journal_entries"]["updated"].value == 0


def upstream_entries(api) -> dict[int, tuple]:
    """Every journal entry the upstream serves now, read page by page with plain httpx."""
    rows, cursor = {}, None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api.url}/api/v1/journal_entries", params=params).json()
        rows.update({r["id"]: (r["mood"], r["score"], r["updated_at"]) for r in page["data"]})
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def warehouse_entries(warehouse) -> dict[int, tuple]:
    with psycopg.connect(warehouse.conninfo()) as conn:
        rows = conn.execute(
            "SELECT id, mood, score, updated_at FROM raw.journal_entries"
        ).fetchall()
    return {i: (m, s, u.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) for i, m, s, u in rows}


def test_incremental_run_loads_new_and_changed_rows(
    start_journal_api, ingest, warehouse, raw_counts
):
    api = start_journal_api(users=30, entries=1_000)
    assert ingest(api).success
    before = warehouse_entries(warehouse)
    api.advance(new_entries=25, changed_entries=10, new_users=2)
    after = upstream_entries(api)
    changed = {i for i in before if after[i] != before[i]}
    assert len(changed) == 10

    result = ingest(api)
    assert result.success
    entries = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "journal_entries"
    )
    assert entries["inserted"].value == 25
    assert entries["appended"].value == 25  # new ids straight into raw; only changes staged
    assert entries["updated"].value == len(changed)
    assert raw_counts() == {"raw.users": 32, "raw.game_types": 12, "raw.journal_entries": 1_025}
    assert warehouse_entries(warehouse) == after
