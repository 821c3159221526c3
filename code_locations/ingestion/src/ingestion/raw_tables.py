"""Loads into Postgres schema raw: COPY, upsert by id and the cursor, in one transaction.

One transaction per endpoint covers the whole extraction: the COPY, the upsert and the
incremental cursor. A failure anywhere (the upstream, a bad record, the database) rolls all
of it back, so the raw table and its cursor stay exactly as they were and a re-run is safe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from data_platform.resources import copy_into
from psycopg import sql

from ingestion.records import (
    RECORD_TYPES,
    CopyText,
    Record,
    RecordValidationError,
    columns,
    endpoint_path,
)

SCHEMA = "raw"
CURSORS = sql.Identifier(SCHEMA, "ingestion_cursors")


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
    """Land every page in raw and advance the cursor, inside the caller's transaction.

    The table is locked against other writers for the whole load, which makes two paths
    safe: a row whose id is above every id in the table, seen for the first time, cannot
    conflict and is COPYed straight into the table (appends are most of the traffic, and
    this is as fast as COPY gets); every other row is COPYed into a temporary table and
    upserted from there: UPDATE what changed, INSERT what is missing. The caller commits
    only when everything succeeded, so a failure leaves the table and its cursor untouched.
    """
    names = [name for name, _ in columns(record_type)]
    target = _table(record_type)
    incoming = sql.Identifier(f"incoming_{record_type.table}")
    conn.execute("SET LOCAL TimeZone = 'UTC'")  # a timestamp without offset means UTC
    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
    (max_id,) = conn.execute(
        sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(target)
    ).fetchone() or (0,)
    conn.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            incoming, target
        )
    )
    as_text = CopyText(record_type)
    fetched, newest = 0, updated_since
    seen: set[int] = set()
    appended: list[int] = []  # ids in COPY order, to name the record behind a rejected line
    to_upsert: list[Any] = []  # records that may exist already (usually few)
    with conn.cursor() as cursor:
        with (
            _rejections_named(record_type, appended),
            copy_into(cursor, target, names) as copy,
        ):
            for records in pages:
                ids = [record.id for record in records]
                if ids and min(ids) > max_id and seen.isdisjoint(ids) and len(set(ids)) == len(ids):
                    copy.write(as_text(records))  # the common case: a page of new rows
                    appended += ids
                else:
                    for record in records:
                        if record.id > max_id and record.id not in seen:
                            copy.write(as_text([record]))
                            appended.append(record.id)
                        else:
                            to_upsert.append(record)
                        seen.add(record.id)
                seen.update(ids)
                if records:
                    newest = _later(newest, _page_newest(record_type, records))
                fetched += len(records)
        updated = inserted = 0
        if to_upsert:
            upsert_ids = [record.id for record in to_upsert]
            with (
                _rejections_named(record_type, upsert_ids),
                copy_into(cursor, incoming, names) as copy,
            ):
                copy.write(as_text(to_upsert))
            updated, inserted = _upsert(cursor, target, incoming, names)
        if newest is not None:
            cursor.execute(
                sql.SQL(
                    "INSERT INTO {} (endpoint, updated_since, rows_loaded) VALUES (%s, %s, %s) "
                    "ON CONFLICT (endpoint) DO UPDATE SET updated_since = EXCLUDED.updated_since, "
                    "rows_loaded = EXCLUDED.rows_loaded, loaded_at = now()"
                ).format(CURSORS),
                [record_type.endpoint, newest, fetched],
            )
    return LoadResult(fetched, len(appended) + inserted, updated, updated_since, newest)


def _page_newest(record_type: type[Record], records: list[Any]) -> datetime:
    """The cursor a page advances to: its last row's updated_at (pages are in that order)."""
    last = records[-1]
    try:
        moment = datetime.fromisoformat(last.updated_at)
    except ValueError as error:
        raise RecordValidationError(
            endpoint_path(record_type),
            last.id,
            "updated_at",
            f"not a timestamp: {last.updated_at!r}",
        ) from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _later(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current


_COPY_CONTEXT = re.compile(r"line (\d+)(?:, column (\w+))?")


@contextmanager
def _rejections_named(record_type: type[Record], ids: list[int]) -> Iterator[None]:
    """Turn Postgres' rejection of a COPY line into an error naming the record and field."""
    try:
        yield
    except psycopg.errors.DataError as error:
        where = _COPY_CONTEXT.search(error.diag.context or "")
        if where is None or int(where.group(1)) > len(ids):
            raise
        record_id = ids[int(where.group(1)) - 1]
        problem = error.diag.message_primary or str(error)
        raise RecordValidationError(
            endpoint_path(record_type), record_id, where.group(2) or "?", problem
        ) from error


def _upsert(
    cursor: psycopg.Cursor[Any], target: sql.Identifier, incoming: sql.Identifier, names: list[str]
) -> tuple[int, int]:
    """UPDATE rows that changed, then INSERT rows that are missing; (updated, inserted)."""
    # a row that changed while we paged through came twice: only its newest version counts
    source = sql.SQL("(SELECT DISTINCT ON (id) * FROM {} ORDER BY id, updated_at DESC)").format(
        incoming
    )
    column_list = sql.SQL(", ").join(map(sql.Identifier, names))
    changed = sql.SQL(", ").join(
        sql.SQL("{0} = s.{0}").format(sql.Identifier(n)) for n in names if n != "id"
    )
    current = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in names)
    arriving = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(n)) for n in names)
    cursor.execute(
        sql.SQL(
            "UPDATE {target} AS t SET {changed}, _ingested_at = now() FROM {source} AS s "
            # an older version of a row (re-read at the cursor's edge) never overwrites a newer
            "WHERE t.id = s.id AND t.updated_at <= s.updated_at "
            "AND ({current}) IS DISTINCT FROM ({arriving})"
        ).format(target=target, changed=changed, source=source, current=current, arriving=arriving)
    )
    updated = cursor.rowcount
    cursor.execute(
        sql.SQL(
            "INSERT INTO {target} ({columns}) SELECT {columns} FROM {source} AS s "
            "WHERE NOT EXISTS (SELECT FROM {target} AS t WHERE t.id = s.id)"
        ).format(target=target, columns=column_list, source=source)
    )
    return updated, cursor.rowcount
