"""The gold tables, and each as one Parquet file streamed in batches (flat memory at any size)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from data_platform.resources import PostgresResource
from psycopg import sql

GOLD_TABLES = ("user_journal_features", "game_type_stats")
BATCH_ROWS = 50_000

# Postgres type names -> Arrow types; the gold contract uses only these
_ARROW_TYPES = {
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "double precision": pa.float64(),
    "text": pa.string(),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(conn: psycopg.Connection[Any], schema: str, table: str) -> pa.Schema:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    if not rows:
        raise LookupError(f"table {schema}.{table} does not exist: run the dbt models first")
    unknown = [f"{name} ({kind})" for name, kind in rows if kind not in _ARROW_TYPES]
    if unknown:
        raise TypeError(f"{schema}.{table}: no Parquet type for column(s) {', '.join(unknown)}")
    return pa.schema([pa.field(name, _ARROW_TYPES[kind]) for name, kind in rows])


def write_parquet(postgres: PostgresResource, schema: str, table: str, path: Path) -> int:
    """Write ``schema.table`` to ``path`` (ordered by its key columns); the number of rows."""
    with postgres.connect() as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        arrow = arrow_schema(conn, schema, table)
        names = arrow.names
        key = [names[0], "feature_date"] if "feature_date" in names else names[:1]
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.Identifier(schema, table),
            sql.SQL(", ").join(map(sql.Identifier, key)),
        )
        rows = 0
        with (
            conn.cursor(name=f"export_{table}") as cursor,
            pq.ParquetWriter(path, arrow, compression="zstd") as writer,
        ):
            cursor.itersize = BATCH_ROWS
            cursor.execute(query)
            while batch := cursor.fetchmany(BATCH_ROWS):
                columns = list(zip(*batch, strict=True))
                writer.write_batch(pa.record_batch(columns, schema=arrow))
                rows += len(batch)
        return rows
