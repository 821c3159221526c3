"""The ingestion location's part of the demo's JSON line: row counts per raw table."""

from typing import Any

from psycopg import sql

from ingestion.defs.resources.warehouse import postgres
from ingestion.raw_tables import table_name
from ingestion.records import RECORD_TYPES


def summary() -> dict[str, Any]:
    counts = {}
    with postgres.process_config_and_initialize().connect() as conn:
        for record_type in RECORD_TYPES:
            table = table_name(record_type)
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))
            row = conn.execute(query).fetchone()
            counts[table] = row[0] if row else 0
    return {"raw_rows": counts}
