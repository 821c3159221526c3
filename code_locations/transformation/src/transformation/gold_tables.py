"""The gold tables, each streamed in batches into Parquet parts (flat memory at any size)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by the export steps only, not when the location loads
    import psycopg
    import pyarrow as pa
    from psycopg import sql

GOLD_TABLES = ("user_journal_features", "game_type_stats")
BATCH_ROWS = 50_000
PART_ROWS = 1_000_000  # rows per Parquet object: ranged readers fetch parts independently


def _arrow_types() -> dict[str, pa.DataType]:
    """Postgres type names -> Arrow types; the gold contract uses only these."""
    import pyarrow as pa

    return {
        "bigint": pa.int64(),
        "integer": pa.int32(),
        "double precision": pa.float64(),
        "text": pa.string(),
        "date": pa.date32(),
        "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    }


def arrow_schema(conn: psycopg.Connection[Any], schema: str, table: str) -> pa.Schema:
    import pyarrow as pa

    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    if not rows:
        raise LookupError(f"table {schema}.{table} does not exist: run the dbt models first")
    types = _arrow_types()
    unknown = [f"{name} ({kind})" for name, kind in rows if kind not in types]
    if unknown:
        raise TypeError(f"{schema}.{table}: no Parquet type for column(s) {', '.join(unknown)}")
    return pa.schema([pa.field(name, types[kind]) for name, kind in rows])


def export_query(
    conn: psycopg.Connection[Any], schema: str, table: str
) -> tuple[pa.Schema, sql.Composed]:
    """The table's Arrow schema, and a query of all its rows ordered by its key columns."""
    from psycopg import sql

    arrow = arrow_schema(conn, schema, table)
    names = arrow.names
    key = [names[0], "feature_date"] if "feature_date" in names else names[:1]
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.Identifier(schema, table),
        sql.SQL(", ").join(map(sql.Identifier, key)),
    )
    return arrow, query


def write_parts(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    open_part: Callable[[int], AbstractContextManager[Path]],
    part_rows: int = PART_ROWS,
) -> list[int]:
    """Stream ``schema.table`` into Parquet parts of at most ``part_rows`` rows each.

    ``open_part(i)`` gives the path part i is written to, and publishes it when its block
    ends. Runs in the caller's transaction, so several tables can share one snapshot. Returns
    the rows of each part (at least one part, empty for an empty table).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow, query = export_query(conn, schema, table)
    counts: list[int] = []
    with conn.cursor(name=f"export_{table}") as cursor:
        cursor.itersize = BATCH_ROWS
        cursor.execute(query)
        batch = cursor.fetchmany(min(BATCH_ROWS, part_rows))
        while batch or not counts:
            with (
                open_part(len(counts)) as path,
                pq.ParquetWriter(path, arrow, compression="zstd") as writer,
            ):
                rows = 0
                while batch:
                    writer.write_batch(
                        pa.record_batch(list(zip(*batch, strict=True)), schema=arrow)
                    )
                    rows += len(batch)
                    if rows >= part_rows:
                        batch = cursor.fetchmany(min(BATCH_ROWS, part_rows))
                        break
                    batch = cursor.fetchmany(min(BATCH_ROWS, part_rows - rows))
                if not batch and rows == 0:
                    writer.write_table(arrow.empty_table())
            counts.append(rows)
    return counts
