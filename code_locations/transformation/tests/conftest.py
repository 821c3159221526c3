"""Fixtures of the transformation tests: raw data loaded by the real ingestion assets, dbt
pointed at the test's own warehouse, and an S3-compatible server as a real process."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from data_platform.resources import PostgresResource
from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.processes import ManagedProcess, free_port, wait_until
from ingestion.defs.assets.ingestion.journal_app import journal_app
from ingestion.journal_api import JournalApiResource


def _environment(warehouse: PostgresResource) -> dict[str, str]:
    return {
        "POSTGRES_HOST": warehouse.host,
        "POSTGRES_PORT": str(warehouse.port),
        "POSTGRES_USER": warehouse.user,
        "POSTGRES_PASSWORD": warehouse.password,
        "WAREHOUSE_DB": warehouse.database,
        "DBT_TARGET": "local",
    }


@pytest.fixture
def warehouse_environment() -> Callable[[PostgresResource], dict[str, str]]:
    """The env contract's variables for a warehouse (what the stack sets for every process)."""
    return _environment


@pytest.fixture
def dbt_warehouse(
    warehouse: PostgresResource, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> PostgresResource:
    """This test's warehouse, with dbt's profile variables pointing at it."""
    for name, value in _environment(warehouse).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt-target"))
    return warehouse


# what the ingestion location writes for upstream tombstones (created here while the
# ingestion side is not merged; the same DDL, so either may create it)
DELETIONS_DDL = """
CREATE TABLE IF NOT EXISTS raw.deletions (
    entity text, id bigint, user_id bigint, played_at timestamptz null,
    deleted_at timestamptz, ingested_at timestamptz, PRIMARY KEY (entity, id)
)
"""


@pytest.fixture
def raw_tables(dbt_warehouse: PostgresResource) -> PostgresResource:
    """Empty raw tables created by the ingestion's own DDL, raw.deletions included."""
    from ingestion.raw_tables import migrate

    with dbt_warehouse.connect() as conn:
        migrate(conn)
        conn.execute(DELETIONS_DDL)
    return dbt_warehouse


@pytest.fixture
def chess_player(raw_tables: PostgresResource) -> PostgresResource:
    """raw_tables with one game type (1, chess) and one user (1): entries need both."""
    with raw_tables.connect() as conn:
        conn.execute(
            "INSERT INTO raw.game_types (id, created_at, updated_at, name, category) "
            "VALUES (1, now(), now(), 'chess', 'strategy')"
        )
        conn.execute(
            "INSERT INTO raw.users (id, created_at, updated_at, name, email) "
            "VALUES (1, now(), now(), 'user 1', 'u1@example.com')"
        )
    return raw_tables


@pytest.fixture
def ingest(warehouse: PostgresResource) -> Callable[[JournalApiProcess], dg.ExecuteInProcessResult]:
    """Load raw.* from the dev upstream with the ingestion location's own assets."""

    def run(api: JournalApiProcess) -> dg.ExecuteInProcessResult:
        client = JournalApiResource(base_url=api.url, page_size=5_000, backoff_seconds=0.01)
        return dg.materialize(
            [journal_app], resources={"postgres": warehouse, "journal_api": client}
        )

    return run


@pytest.fixture
def build_gold(dbt_warehouse: PostgresResource) -> Callable[[], dg.ExecuteInProcessResult]:
    """`dbt build` of every model and test through the location's dbt_analytics asset."""
    from transformation.dbt_config import dbt_cli
    from transformation.defs.assets.transformations.dbt_assets import dbt_analytics

    return lambda: dg.materialize(
        [dbt_analytics], resources={"dbt": dbt_cli(), "postgres": dbt_warehouse}
    )


@pytest.fixture
def rows(warehouse: PostgresResource) -> Callable[[str], list[dict[str, Any]]]:
    """Every row of a table of the test's warehouse, as dicts."""
    from psycopg.rows import dict_row

    def fetch(query: str) -> list[dict[str, Any]]:
        with warehouse.connect() as conn, conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(query).fetchall()

    return fetch


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto in server mode, as its own process on a free port: a real S3 API over HTTP."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = ManagedProcess(
        "moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/moto-api/", timeout=1).status_code < 500, "moto", 60, server
        )
        yield url
    finally:
        server.stop()
