"""Loads into Postgres schema raw: COPY into a temporary table, then upsert by id, atomically.

One transaction per endpoint covers the whole extraction: the temporary table, the upsert and
the incremental cursor. A failure anywhere (the upstream, a bad record, the database) rolls
all of it back, so the raw table and its cursor stay exactly as they were and a re-run is safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from ingestion.records import RECORD_TYPES, Record, columns

SCHEMA = "raw"
CURSORS = sql.Identifier(SCHEMA, "ingestion_cursors")
_BINARY_TYPES = {"bigint": "int8", "text": "text", "timestamptz": "timestamptz", "double precision": "float8"}


def table_name(record_type: type[Record]) -> str:
    return f"{SCHEMA}.{record_type.table}"


def _table(record_type: type[Record]) -> sql.Identifier:
    return sql.Identifier(SCHEMA, record_type.table)


def ensure_tables(conn: psycopg.Connection[Any]) -> None:
    """Create schema raw, its tables and the cursor table; add columns declared since."""
    with conn.transaction():
        # one DDL writer at a time: concurrent CREATE ... IF NOT EXISTS can still collide
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('raw-tables-ddl'))")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (endpoint text PRIMARY KEY, "
                "updated_since timestamptz NOT NULL, rows_loaded bigint NOT NULL, "
                "loaded_at timestamptz NOT NULL DEFAULT now())"
            ).format(CURSORS)
        )
        for record_type in RECORD_TYPES:
            table = _table(record_type)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, "
                    "_ingested_at timestamptz NOT NULL DEFAULT now())"
                ).format(table)
            )
            for name, pg_type in columns(record_type):
                if name == "id":
                    continue
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {} NOT NULL").format(
                        table, sql.Identifier(name), sql.SQL(pg_type)
                    )
                )


def read_cursor(conn: psycopg.Connection[Any], record_type: type[Record]) -> datetime | None:
    row = conn.execute(
        sql.SQL("SELECT updated_since FROM {} WHERE endpoint = %s").format(CURSORS),
        [record_type.endpoint],
    ).fetchone()
    return None if row is None else row[0]


@dataclass(frozen=True)
class LoadResult:
    fetched: int
    inserted: int
    updated: int
    updated_since: datetime | None  # the cursor this load started from
    new_cursor: datetime | None

    @property
    def unchanged(self) -> int:
        return self.fetched - self.inserted - self.updated


def load(
    conn: psycopg.Connection[Any],
    record_type: type[Record],
    pages: Iterable[list[Any]],
    updated_since: datetime | None,
) -> LoadResult:
    """COPY every page into a temporary table, then upsert into raw and advance the cursor.

    Runs inside the caller's transaction: the caller commits only when everything succeeded.
    """
    names = [name for name, _ in columns(record_type)]
    binary_types = [_BINARY_TYPES[pg_type] for _, pg_type in columns(record_type)]
    target = _table(record_type)
    incoming = sql.Identifier(f"incoming_{record_type.table}")
    column_list = sql.SQL(", ").join(map(sql.Identifier, names))
    conn.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            incoming, target
        )
    )
    fetched = 0
    with conn.cursor() as cursor:
        with cursor.copy(
            sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(incoming, column_list)
        ) as copy:
            copy.set_types(binary_types)
            astuple = msgspec.structs.astuple
            for records in pages:
                for record in records:
                    copy.write_row(astuple(record))
                fetched += len(records)
        upsert = sql.SQL(
            "WITH upserted AS ("
            "INSERT INTO {target} AS t ({columns}) SELECT {columns} FROM {source} "
            "ON CONFLICT (id) DO UPDATE SET {assignments}, _ingested_at = now() "
            # an older version of a row (re-fetched at the cursor's edge) never overwrites a newer
            "WHERE t.updated_at <= EXCLUDED.updated_at "
            "AND ({current}) IS DISTINCT FROM ({excluded}) "
            "RETURNING (xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
            "FROM upserted"
        )
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names if n != "id"
        )
        current = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in names)
        excluded = sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) for n in names)

        def run_upsert(source: sql.Composable) -> tuple[int, int]:
            cursor.execute(
                upsert.format(
                    target=target,
                    columns=column_list,
                    source=source,
                    assignments=assignments,
                    current=current,
                    excluded=excluded,
                )
            )
            inserted, updated = cursor.fetchone() or (0, 0)
            return inserted, updated

        try:
            with conn.transaction():  # savepoint: the fast path fails if an id came twice
                inserted, updated = run_upsert(incoming)
        except psycopg.errors.CardinalityViolation:
            # a row changed while we paged through, so it came twice: keep its newest version
            newest = sql.SQL(
                "(SELECT DISTINCT ON (id) {columns} FROM {incoming} ORDER BY id, updated_at DESC) AS newest"
            ).format(columns=column_list, incoming=incoming)
            inserted, updated = run_upsert(newest)
        new_cursor = cursor.execute(sql.SQL("SELECT max(updated_at) FROM {}").format(incoming)).fetchone()
        cursor_value = new_cursor[0] if new_cursor and new_cursor[0] is not None else updated_since
        if cursor_value is not None:
            cursor.execute(
                sql.SQL(
                    "INSERT INTO {} (endpoint, updated_since, rows_loaded) VALUES (%s, %s, %s) "
                    "ON CONFLICT (endpoint) DO UPDATE SET updated_since = EXCLUDED.updated_since, "
                    "rows_loaded = EXCLUDED.rows_loaded, loaded_at = now()"
                ).format(CURSORS),
                [record_type.endpoint, cursor_value, fetched],
            )
    return LoadResult(fetched, inserted, updated, updated_since, cursor_value)
