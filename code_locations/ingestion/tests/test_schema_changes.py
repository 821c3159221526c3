"""Schema changes: a field added upstream, then declared; migrations run once, never per load."""

import psycopg
from ingestion.loads import ingest_endpoint
from ingestion.raw_tables import migrate, schema_version
from ingestion.records import GameType, JournalEntry, User


class JournalEntryWithLocation(JournalEntry, frozen=True):
    """The declaration after a team adds the upstream's new field (optional: older rows lack it)."""

    location: str | None = None


SCHEMA_V2 = (User, GameType, JournalEntryWithLocation)


def test_a_new_upstream_field_never_fails_a_load(
    start_journal_api, ingest, warehouse, client_for, raw_counts
):
    api = start_journal_api(users=5, entries=300)
    assert ingest(api).success

    # the upstream starts sending a field nobody declared yet: loads carry on without it
    api.set_faults(extra_field="journal_entries.location")
    api.advance(new_entries=10)
    assert ingest(api).success
    assert raw_counts()["raw.journal_entries"] == 310

    # declared as optional: one migration adds a nullable column to the non-empty table
    with warehouse.connect(autocommit=True) as conn:
        applied = migrate(conn, SCHEMA_V2)
        assert applied == ['ALTER TABLE "raw"."journal_entries" ADD COLUMN "location" text']
        assert migrate(conn, SCHEMA_V2) == []  # once
    api.advance(new_entries=10)
    result = ingest_endpoint(warehouse, client_for(api), JournalEntryWithLocation, schema=SCHEMA_V2)
    assert result.merge.inserted == 10
    with psycopg.connect(warehouse.conninfo()) as conn:
        locations = dict(conn.execute("SELECT id, location FROM raw.journal_entries"))
        versions = {v for (v,) in conn.execute("SELECT version FROM raw.schema_migrations")}
    assert locations[1] is None  # older rows have no value, and that is fine
    assert locations[320] == "location-320"
    assert len(locations) == 320
    assert versions == {schema_version(), schema_version(SCHEMA_V2)}
