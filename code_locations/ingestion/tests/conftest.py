from collections.abc import Callable
from datetime import UTC
from typing import Any

import dagster as dg
import httpx
import psycopg
import pytest
from data_platform.resources import PostgresResource
from data_platform_dev.journal_api.process import JournalApiProcess
from ingestion.defs.assets.ingestion.journal_app import journal_app
from ingestion.journal_api import JournalApiResource

RAW_TABLES = ("raw.users", "raw.game_types", "raw.journal_entries")


def _client_for(api: JournalApiProcess, **overrides: Any) -> JournalApiResource:
    settings: dict[str, Any] = {
        "base_url": api.url,
        "page_size": 100,
        "backoff_seconds": 0.01,
        "timeout_seconds": 5.0,
    }
    settings.update(overrides)
    return JournalApiResource(**settings)


@pytest.fixture
def client_for() -> Callable[..., JournalApiResource]:
    """A client for a started upstream, with fast retries for tests."""
    return _client_for


@pytest.fixture
def ingest(warehouse: PostgresResource) -> Callable[..., dg.ExecuteInProcessResult]:
    """Materialize raw assets against the given upstream, as a run of the location would."""

    def run(
        api: JournalApiProcess,
        selection: list[str] | None = None,
        config: dict[str, Any] | None = None,
        **client: Any,
    ) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [journal_app],
            selection=selection,
            resources={"postgres": warehouse, "journal_api": _client_for(api, **client)},
            run_config={"ops": {"journal_app": {"config": config}}} if config else None,
            raise_on_error=False,
        )

    return run


@pytest.fixture
def raw_snapshot(warehouse: PostgresResource) -> Callable[[], dict[str, list[tuple[Any, ...]]]]:
    return lambda: _snapshot(warehouse)


@pytest.fixture
def raw_counts(warehouse: PostgresResource) -> Callable[[], dict[str, int]]:
    return lambda: _row_counts(warehouse)


def _snapshot(warehouse: PostgresResource) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every raw table and of the cursor table (without load timestamps)."""
    result: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(warehouse.conninfo()) as conn:
        exists = conn.execute("SELECT to_regclass('raw.ingestion_cursors')").fetchone()
        if exists is None or exists[0] is None:
            return result
        for table in RAW_TABLES:
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw' "
                    "AND table_name = %s AND column_name NOT IN ('_ingested_at', '_fetched_at') "
                    "ORDER BY column_name",
                    [table.split(".")[1]],
                )
            ]
            result[table] = conn.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY id"
            ).fetchall()
        result["cursors"] = conn.execute(
            "SELECT endpoint, updated_since FROM raw.ingestion_cursors ORDER BY endpoint"
        ).fetchall()
    return result


def _row_counts(warehouse: PostgresResource) -> dict[str, int]:
    with psycopg.connect(warehouse.conninfo()) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in RAW_TABLES}  # type: ignore[index]


@pytest.fixture
def step_error() -> Callable[[dg.ExecuteInProcessResult], str]:
    return _step_error


def _step_error(result: dg.ExecuteInProcessResult) -> str:
    """The error messages of the failed steps, cause chain included."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            error = event.step_failure_data.error
            while error is not None:
                messages.append(error.message)
                error = error.cause
    return "\n".join(messages)


def upstream_rows(api: JournalApiProcess, endpoint: str) -> dict[int, str]:
    """id -> updated_at of every row the upstream serves now, read with plain httpx."""
    rows, cursor = {}, None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api.url}/api/v1/{endpoint}", params=params, timeout=10).json()
        rows.update({r["id"]: r["updated_at"] for r in page["data"]})
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def raw_rows(warehouse: PostgresResource, table: str) -> dict[int, str]:
    """id -> updated_at (in the upstream's format) of every row of a raw table."""
    with psycopg.connect(warehouse.conninfo()) as conn:
        rows = conn.execute(f"SELECT id, updated_at FROM {table}").fetchall()
    return {i: u.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for i, u in rows}


@pytest.fixture
def assert_raw_is_upstream(warehouse: PostgresResource) -> Callable[[JournalApiProcess], None]:
    """raw.users and raw.journal_entries hold exactly the upstream's rows, newest versions."""

    def check(api: JournalApiProcess) -> None:
        for endpoint in ("users", "journal_entries"):
            upstream, raw = upstream_rows(api, endpoint), raw_rows(warehouse, f"raw.{endpoint}")
            missing, extra = sorted(set(upstream) - set(raw)), sorted(set(raw) - set(upstream))
            assert not missing and not extra, f"{endpoint}: missing {missing}, extra {extra}"
            stale = sorted(i for i in upstream if upstream[i] != raw[i])
            assert not stale, f"{endpoint}: stale versions of {stale}"

    return check


def materialization(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """The metadata values of one asset's materialization in a run."""
    return next(
        {key: value.value for key, value in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
        if event.asset_key.path[-1] == asset
    )


@pytest.fixture
def metadata() -> Callable[[dg.ExecuteInProcessResult, str], dict[str, Any]]:
    return materialization
