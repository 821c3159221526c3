"""The journal app's users, game types and journal entries, landed in Postgres schema raw."""

import dagster as dg
from data_platform.resources import PostgresResource
from psycopg import sql

from ingestion.raw_tables import ensure_tables, load, read_cursor, table_name
from ingestion.records import GameType, JournalEntry, Record, User
from ingestion.resources.journal_api import JournalApiResource


def ingest(
    context: dg.AssetExecutionContext,
    record_type: type[Record],
    postgres: PostgresResource,
    journal_api: JournalApiResource,
) -> dg.MaterializeResult:
    """Fetch what changed since the last successful load and upsert it, all or nothing."""
    table = table_name(record_type)
    with postgres.connect(autocommit=True) as conn:
        ensure_tables(conn)
        with conn.transaction():
            # load() locks the table first, so two runs of one asset queue instead of interleaving
            since = read_cursor(conn, record_type)
            context.log.info(f"fetching /api/v1/{record_type.endpoint} updated since {since}")
            pages = journal_api.fetch(record_type, since, on_retry=context.log.warning)
            result = load(conn, record_type, pages, since)
        (total,) = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))
        ).fetchone() or (0,)
    context.log.info(
        f"{table}: fetched {result.fetched}, inserted {result.inserted}, "
        f"updated {result.updated}, unchanged {result.unchanged}; {total} rows in total"
    )
    return dg.MaterializeResult(
        metadata={
            "table": table,
            "fetched": result.fetched,
            "inserted": result.inserted,
            "updated": result.updated,
            "row_count": dg.MetadataValue.int(total),
            "updated_since": str(result.updated_since),
            "cursor": str(result.new_cursor),
        }
    )


def raw_asset(name: str, record_type: type[Record], description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name="ingestion",
        kinds={"postgres", "api"},
        description=description,
        metadata={"table": table_name(record_type), "endpoint": f"/api/v1/{record_type.endpoint}"},
    )
    def _asset(
        context: dg.AssetExecutionContext,
        postgres: PostgresResource,
        journal_api: JournalApiResource,
    ) -> dg.MaterializeResult:
        return ingest(context, record_type, postgres, journal_api)

    return _asset


api_users = raw_asset("api_users", User, "Users of the journal app, in raw.users.")
get_game_types_from_api = raw_asset(
    "get_game_types_from_api", GameType, "Game types of the journal app, in raw.game_types."
)
journal_entries = raw_asset(
    "journal_entries",
    JournalEntry,
    "Journal entries (a game played: duration, score, mood 1-5), in raw.journal_entries.",
)
