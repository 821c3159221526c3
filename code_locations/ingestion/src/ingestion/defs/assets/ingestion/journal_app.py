"""The journal app's users, game types and journal entries, landed in Postgres schema raw."""

import dagster as dg
from data_platform.resources import PostgresResource
from psycopg import sql

from ingestion.journal_api import JournalApiResource
from ingestion.raw_tables import ensure_tables, load, read_cursor, table_name
from ingestion.records import GameType, JournalEntry, Record, User, endpoint_path


def ingest(
    context: dg.AssetExecutionContext,
    record_type: type[Record],
    postgres: PostgresResource,
    journal_api: JournalApiResource,
    asset_key: dg.AssetKey,
) -> dg.MaterializeResult:
    """Fetch what changed since the last successful load and upsert it, all or nothing."""
    table = table_name(record_type)
    with postgres.connect(autocommit=True) as conn:
        ensure_tables(conn)
        with conn.transaction():
            # load() locks the table first, so two runs of one asset queue instead of interleaving
            since = read_cursor(conn, record_type)
            context.log.info(f"fetching {endpoint_path(record_type)} updated since {since}")
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
        asset_key=asset_key,
        metadata={
            "table": table,
            "fetched": result.fetched,
            "inserted": result.inserted,
            "updated": result.updated,
            "row_count": dg.MetadataValue.int(total),
            "updated_since": str(result.updated_since),
            "cursor": str(result.new_cursor),
        },
    )


def raw_spec(name: str, record_type: type[Record], description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        name,
        group_name="ingestion",
        kinds={"postgres", "api"},
        description=description,
        metadata={"table": table_name(record_type), "endpoint": endpoint_path(record_type)},
    )


ENDPOINTS: dict[type[Record], dg.AssetSpec] = {
    User: raw_spec("api_users", User, "Users of the journal app, in raw.users."),
    GameType: raw_spec(
        "get_game_types_from_api", GameType, "Game types of the journal app, in raw.game_types."
    ),
    JournalEntry: raw_spec(
        "journal_entries",
        JournalEntry,
        "Journal entries (a game played: duration, score, mood 1-5), in raw.journal_entries.",
    ),
}


@dg.multi_asset(specs=list(ENDPOINTS.values()), can_subset=True, name="journal_app")
def journal_app(
    context: dg.AssetExecutionContext, postgres: PostgresResource, journal_api: JournalApiResource
):
    """Each selected endpoint loads in its own transaction; their materializations are
    reported together at the end, so downstream automation reacts once to a whole batch
    instead of once per endpoint. An endpoint that fails does not stop the others; the run
    still fails, naming it, and what loaded is reported."""
    results, errors = [], []
    for record_type, spec in ENDPOINTS.items():
        if spec.key not in context.selected_asset_keys:
            continue
        try:
            results.append(ingest(context, record_type, postgres, journal_api, spec.key))
        except Exception as error:  # noqa: BLE001 - re-raised below, after the others ran
            context.log.error(f"{endpoint_path(record_type)} failed: {error}")
            errors.append(error)
    yield from results
    if errors:
        raise errors[0]
