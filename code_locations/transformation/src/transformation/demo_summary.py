"""The transformation location's part of `make demo`'s JSON line (data_platform_dev.stack.demo
imports it and calls summary() with the stack's environment in place)."""

from __future__ import annotations

from typing import Any

from data_platform import settings
from data_platform.resources import PostgresResource

from transformation import LOCATION
from transformation.defs.resources.exports import export_store
from transformation.gold_tables import GOLD_TABLES
from transformation.object_store import ExportStore


def gold_rows(postgres: PostgresResource) -> dict[str, int]:
    """Rows per gold table; -1 for a table dbt has not built yet."""
    counts: dict[str, int] = {}
    with postgres.connect() as conn:
        for table in GOLD_TABLES:
            name = f"gold.{table}"
            (exists,) = conn.execute("SELECT to_regclass(%s)", [name]).fetchone() or (None,)
            row = conn.execute(f"SELECT count(*) FROM {name}").fetchone() if exists else None
            counts[name] = row[0] if row else -1
    return counts


def summary() -> dict[str, Any]:
    """{"gold_rows": {table: rows}, "exported_objects": {uri: bytes}}."""
    postgres = settings.warehouse(LOCATION).process_config_and_initialize()
    store: ExportStore = export_store.process_config_and_initialize()
    return {"gold_rows": gold_rows(postgres), "exported_objects": store.list_objects()}
