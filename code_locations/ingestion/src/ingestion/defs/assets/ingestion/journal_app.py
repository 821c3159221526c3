"""The journal app's users, game types and journal entries, landed in Postgres schema raw,
and the upstream's deletions applied to them (recorded in raw.deletions)."""

import dagster as dg
from data_platform.resources import PostgresResource
from psycopg import sql
from pydantic import Field

from ingestion.journal_api import JournalApiResource
from ingestion.loads import LoadOptions, describe, ingest_endpoint
from ingestion.raw_tables import (
    DELETIONS_TABLE,
    Timeouts,
    count_rejected,
    rejected_table_name,
    table_name,
)
from ingestion.records import GameType, JournalEntry, Record, Tombstone, User, endpoint_path

QUARANTINE_CHECK = "no_quarantined_records"


class JournalAppConfig(dg.Config):
    """How the raw loads behave; every field has a default, so a run needs no config."""

    lookback_seconds: float = Field(
        default=300.0,
        description="each endpoint re-reads this window behind its cursor, so rows committed "
        "late (a long upstream transaction, a writer with a slow clock) still load",
    )
    quarantine: list[str] = Field(
        default_factory=list,
        description="endpoints (users, game_types, journal_entries) whose invalid records go "
        "to raw.<endpoint>_rejected instead of failing the run; the asset check "
        f"{QUARANTINE_CHECK} fails while such rows exist",
    )
    merge_lock_timeout_seconds: float = Field(
        default=60.0, description="how long a merge waits for another load's merge to finish"
    )
    merge_statement_timeout_seconds: float = Field(
        default=900.0, description="the longest any statement of a merge may run"
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
# in a dict, like the others: a module-level AssetSpec would be loaded as an asset of its own
TOMBSTONES: dict[type[Tombstone], dg.AssetSpec] = {
    Tombstone: dg.AssetSpec(
        "deletions",
        group_name="ingestion",
        kinds={"postgres", "api"},
        description="Deletions from the upstream's tombstone feed, applied to raw.users and "
        "raw.journal_entries and recorded in raw.deletions (entity, id, user_id, played_at, "
        "deleted_at, ingested_at): which (user, day) to recompute, which user keys to remove.",
        metadata={"table": DELETIONS_TABLE, "endpoint": endpoint_path(Tombstone)},
    )
}
CHECKS = {
    record_type: dg.AssetCheckSpec(
        QUARANTINE_CHECK,
        asset=spec.key,
        description=f"{rejected_table_name(record_type)} is empty: no record of "
        f"{endpoint_path(record_type)} waits in quarantine",
    )
    for record_type, spec in ENDPOINTS.items()
}


def _options(config: JournalAppConfig, record_type: type[Record] | type[Tombstone]) -> LoadOptions:
    return LoadOptions(
        lookback_seconds=config.lookback_seconds,
        quarantine=record_type.endpoint in config.quarantine,
        timeouts=Timeouts(
            config.merge_lock_timeout_seconds, config.merge_statement_timeout_seconds
        ),
    )


def ingest(
    context: dg.AssetExecutionContext,
    record_type: type[Record] | type[Tombstone],
    postgres: PostgresResource,
    journal_api: JournalApiResource,
    config: JournalAppConfig,
    asset_key: dg.AssetKey,
) -> dg.MaterializeResult:
    """Fetch what changed since the last successful load and merge it, all or nothing."""
    table = DELETIONS_TABLE if record_type is Tombstone else table_name(record_type)  # type: ignore[arg-type]
    result = ingest_endpoint(
        postgres, journal_api, record_type, _options(config, record_type), context.log.info
    )
    with postgres.connect() as conn:
        (total,) = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))
        ).fetchone() or (0,)
    figures = describe(result)
    if record_type is Tombstone:
        figures |= {
            "deleted_users": result.merge.deleted_users,
            "deleted_entries": result.merge.deleted_entries,
            "recorded": result.merge.recorded,
        }
    context.log.info(
        f"{table}: " + ", ".join(f"{k} {v}" for k, v in figures.items()) + f"; {total} rows"
    )
    return dg.MaterializeResult(
        asset_key=asset_key,
        metadata={"table": table, "row_count": dg.MetadataValue.int(total), **figures},
    )


def _quarantine_check(
    postgres: PostgresResource, record_type: type[Record], spec: dg.AssetCheckSpec
) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        waiting = count_rejected(conn, record_type)
    table = rejected_table_name(record_type)
    return dg.AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=waiting == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None
        if waiting == 0
        else f"{waiting} record(s) of {endpoint_path(record_type)} in {table}: fix them "
        "upstream (they load and leave the quarantine) or delete them from the table",
        metadata={"table": table, "quarantined_rows": waiting},
    )


@dg.multi_asset(
    specs=[*ENDPOINTS.values(), *TOMBSTONES.values()],
    check_specs=list(CHECKS.values()),
    can_subset=True,
    name="journal_app",
)
def journal_app(
    context: dg.AssetExecutionContext,
    config: JournalAppConfig,
    postgres: PostgresResource,
    journal_api: JournalApiResource,
):
    """Each selected endpoint loads in its own short merge; deletions come first, so a row
    re-created since its deletion is read after its tombstone and stays (raw orders versions
    and tombstones by read time, see raw_tables). The materializations are reported together
    at the end, so downstream automation reacts once to a whole batch instead of once per
    endpoint. An endpoint that fails does not
    stop the others; the run still fails, naming it, and what loaded is reported."""
    known = {record_type.endpoint for record_type in ENDPOINTS}
    if unknown := set(config.quarantine) - known:
        raise ValueError(
            f"config quarantine names unknown endpoint(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    results: list[dg.MaterializeResult | dg.AssetCheckResult] = []
    errors: list[Exception] = []
    steps: list[tuple[type[Record] | type[Tombstone], dg.AssetSpec]] = [
        *TOMBSTONES.items(),
        *ENDPOINTS.items(),
    ]
    for record_type, spec in steps:
        if spec.key not in context.selected_asset_keys:
            continue
        try:
            results.append(ingest(context, record_type, postgres, journal_api, config, spec.key))
        except Exception as error:  # noqa: BLE001 - re-raised below, after the others ran
            context.log.error(f"{endpoint_path(record_type)} failed: {error}")
            errors.append(error)
            continue
        check = CHECKS.get(record_type)  # type: ignore[arg-type]
        if check is not None and check.key in context.selected_asset_check_keys:
            results.append(_quarantine_check(postgres, record_type, check))  # type: ignore[arg-type]
    yield from results
    if errors:
        raise errors[0]
