"""Loads into Postgres schema raw: stage without locks, then a short merge that moves the cursor.

A load has two phases. Fetch and validate: every page is COPYed into a session-private
temporary table while it downloads; nothing on raw is locked while the HTTP reads and their
retries take their time (minutes, at worst). Merge: one short transaction locks the raw
table against other writers only (readers never wait: SHARE ROW EXCLUSIVE does not conflict
with SELECT), upserts the newest version of each row, and moves the cursor forward, with
lock_timeout and statement_timeout set. A failure or a kill anywhere leaves raw and its
cursor exactly as they were, and the next run re-reads what this one did not merge.

Rows are identified by (id, updated_at): a version already in raw (re-read by the cursor's
look-back window) changes nothing, an older version never overwrites a newer one, and a
version not newer than the row's deletion (raw.deletions) never brings the row back.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from data_platform.resources import copy_into
from psycopg import sql

from ingestion.records import (
    RECORD_TYPES,
    CopyText,
    Record,
    RecordValidationError,
    Rejected,
    Tombstone,
    columns,
    endpoint_path,
    nullable,
)

SCHEMA = "raw"
CURSORS = sql.Identifier(SCHEMA, "ingestion_cursors")
DELETIONS = sql.Identifier(SCHEMA, "deletions")
MIGRATIONS = sql.Identifier(SCHEMA, "schema_migrations")
DELETIONS_TABLE = f"{SCHEMA}.deletions"
# bump when a table below changes shape (the record tables are versioned by their declarations)
_LAYOUT = 1


class MergeLockTimeoutError(Exception):
    """Another writer held the raw table longer than lock_timeout."""


def table_name(record_type: type[Record]) -> str:
    return f"{SCHEMA}.{record_type.table}"


def rejected_table_name(record_type: type[Record]) -> str:
    return f"{SCHEMA}.{record_type.endpoint}_rejected"


def _table(record_type: type[Record]) -> sql.Identifier:
    return sql.Identifier(SCHEMA, record_type.table)


def _rejected(record_type: type[Record]) -> sql.Identifier:
    return sql.Identifier(SCHEMA, f"{record_type.endpoint}_rejected")


# --- migrations: run once per declared schema, never as part of an ordinary load -----------


def schema_version(record_types: Iterable[type[Record]] = RECORD_TYPES) -> str:
    """A fingerprint of the declared schema: a load migrates only when it changed."""
    declared = {
        t.table: [(name, pg_type, name in nullable(t)) for name, pg_type in columns(t)]
        for t in record_types
    }
    text = json.dumps({"layout": _LAYOUT, "tables": declared}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_migrated(conn: psycopg.Connection[Any], version: str) -> bool:
    """One cheap read: has this schema version been applied? (No DDL, no lock on raw.)"""
    row = conn.execute("SELECT to_regclass('raw.schema_migrations')").fetchone()
    if row is None or row[0] is None:
        return False
    return (
        conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE version = %s").format(MIGRATIONS), [version]
        ).fetchone()
        is not None
    )


def migrate(
    conn: psycopg.Connection[Any],
    record_types: tuple[type[Record], ...] = RECORD_TYPES,
    lock_timeout_seconds: float = 10.0,
) -> list[str]:
    """Bring schema raw to the declared schema once; the statements applied (none if current).

    Tables are created with the declared NOT NULL columns; a field declared later becomes a
    nullable column (older rows have no value for it), so adding one never fails a load.
    A short lock_timeout makes a migration that cannot get its lock fail fast instead of
    queueing every reader of raw behind it.
    """
    version = schema_version(record_types)
    if is_migrated(conn, version):
        return []
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_seconds * 1000)}ms'")
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('raw-schema-migrations'))")
        if is_migrated(conn, version):
            return []  # another run migrated while we waited
        statements = _plan(conn, record_types)
        for statement in statements:
            conn.execute(statement)
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (version, statements) VALUES (%s, %s) ON CONFLICT DO NOTHING"
            ).format(MIGRATIONS),
            [version, ";\n".join(s.as_string(conn) for s in statements)],
        )
    return [s.as_string(conn) for s in statements]


def _plan(
    conn: psycopg.Connection[Any], record_types: tuple[type[Record], ...]
) -> list[sql.Composed]:
    """The DDL that takes what exists to what is declared (only what is missing)."""
    existing: dict[str, dict[str, bool]] = {}
    for table, column, is_nullable in conn.execute(
        "SELECT table_name, column_name, is_nullable = 'YES' FROM information_schema.columns "
        "WHERE table_schema = %s",
        [SCHEMA],
    ):
        existing.setdefault(table, {})[column] = is_nullable
    plan: list[sql.Composed] = []
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [SCHEMA]).fetchone() is None:
        plan.append(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    fixed = {
        "schema_migrations": [
            sql.SQL(
                "CREATE TABLE {} (version text PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now(), statements text NOT NULL)"
            ).format(MIGRATIONS)
        ],
        "ingestion_cursors": [
            sql.SQL(
                "CREATE TABLE {} (endpoint text PRIMARY KEY, "
                "updated_since timestamptz NOT NULL, rows_loaded bigint NOT NULL, "
                "loaded_at timestamptz NOT NULL DEFAULT now())"
            ).format(CURSORS)
        ],
        # one row per applied deletion: what downstream recomputes (user, day) or removes
        "deletions": [
            sql.SQL(
                "CREATE TABLE {} (entity text NOT NULL, id bigint NOT NULL, "
                "user_id bigint, played_at timestamptz, deleted_at timestamptz NOT NULL, "
                "ingested_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (entity, id))"
            ).format(DELETIONS),
            sql.SQL("CREATE INDEX deletions_ingested_at ON {} (ingested_at)").format(DELETIONS),
        ],
    }
    for table_name_, statements in fixed.items():
        if table_name_ not in existing:
            plan += statements
    for record_type in record_types:
        table, have = _table(record_type), existing.get(record_type.table)
        optional = nullable(record_type)
        if have is None:
            definitions = [
                sql.SQL("{} {}{}").format(
                    sql.Identifier(name),
                    sql.SQL(pg_type),
                    sql.SQL(
                        " PRIMARY KEY" if name == "id" else "" if name in optional else " NOT NULL"
                    ),
                )
                for name, pg_type in columns(record_type)
            ]
            definitions.append(sql.SQL("_ingested_at timestamptz NOT NULL DEFAULT now()").format())
            plan.append(
                sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(definitions))
            )
        else:
            for name, pg_type in columns(record_type):
                if name not in have:  # older rows have no value: nullable, whatever declared
                    plan.append(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                            table, sql.Identifier(name), sql.SQL(pg_type)
                        )
                    )
                elif name in optional and not have[name]:
                    plan.append(
                        sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(
                            table, sql.Identifier(name)
                        )
                    )
        if f"{record_type.endpoint}_rejected" not in existing:
            plan.append(
                sql.SQL(
                    "CREATE TABLE {} (id bigint, field text NOT NULL, error text NOT NULL, "
                    "record jsonb NOT NULL, rejected_at timestamptz NOT NULL DEFAULT now())"
                ).format(_rejected(record_type))
            )
    return plan


# --- cursors ----------------------------------------------------------------------------------


def read_cursor(conn: psycopg.Connection[Any], endpoint: str) -> datetime | None:
    row = conn.execute(
        sql.SQL("SELECT updated_since FROM {} WHERE endpoint = %s").format(CURSORS), [endpoint]
    ).fetchone()
    return None if row is None else row[0]


def read_cursors(conn: psycopg.Connection[Any]) -> dict[str, datetime]:
    """Every endpoint's cursor; none before the first load created the table."""
    row = conn.execute("SELECT to_regclass('raw.ingestion_cursors')").fetchone()
    if row is None or row[0] is None:
        return {}
    return dict(
        conn.execute(sql.SQL("SELECT endpoint, updated_since FROM {}").format(CURSORS)).fetchall()
    )


def _move_cursor(
    cursor: psycopg.Cursor[Any], endpoint: str, newest: datetime | None, fetched: int
) -> None:
    """The cursor only moves forward, even when two runs merge one after the other."""
    if newest is None:
        return
    cursor.execute(
        sql.SQL(
            "INSERT INTO {0} AS c (endpoint, updated_since, rows_loaded) VALUES (%s, %s, %s) "
            "ON CONFLICT (endpoint) DO UPDATE SET "
            "updated_since = greatest(c.updated_since, EXCLUDED.updated_since), "
            "rows_loaded = EXCLUDED.rows_loaded, loaded_at = now()"
        ).format(CURSORS),
        [endpoint, newest, fetched],
    )


# --- staging: fetch and validate into a session-private table, no lock on raw --------------


@dataclass
class Staged:
    table: sql.Identifier
    rows: int
    duplicates: bool  # some id came twice (it changed while we paged through)
    newest: datetime | None
    rejected: list[Rejected]


def stage(
    conn: psycopg.Connection[Any],
    record_type: type[msgspec.Struct],
    pages: Iterable[list[Any]],
    rejected: list[Rejected] | None = None,
) -> Staged:
    """COPY every page into a temporary table as it arrives. The COPY touches nothing but
    that table: it holds no lock on raw, and a kill drops the table with the session.

    Postgres parses the timestamps during the COPY; a value it rejects fails the load naming
    the record and field, or, with ``rejected`` (quarantine), is set aside with its error.
    """
    name: str = record_type.table  # type: ignore[attr-defined]
    table = sql.Identifier(f"staging_{name}")
    names = [column for column, _ in columns(record_type)]
    conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(table))
    conn.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} ({})").format(
            table,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                for c, t in columns(record_type)
            ),
        )
    )
    as_text = CopyText(record_type)
    tombstones = name == "deletions"
    seen: set[int] = set()
    copied: list[int] = []  # ids in COPY order, to name the record behind a rejected line
    rows, duplicates = 0, False
    with conn.cursor() as cursor:
        if rejected is None:  # one COPY for every page: Postgres parses while the next arrives
            with (
                _rejections_named(record_type, copied),
                copy_into(cursor, table, names, queued=True) as copy,
            ):
                for records in pages:
                    ids = [record.id for record in records]
                    copy.write(as_text(records))
                    copied += ids
                    before = len(seen)
                    seen.update(ids)
                    duplicates = duplicates or len(seen) - before != len(ids)
            rows = len(copied)
        else:  # quarantine: a COPY per page, so a rejected page can be taken apart
            for records in pages:
                ids = [record.id for record in records]
                try:
                    with (
                        _rejections_named(record_type, ids),
                        copy_into(cursor, table, names) as copy,
                    ):
                        copy.write(as_text(records))
                except RecordValidationError:
                    records = _copy_one_by_one(cursor, table, names, as_text, records, rejected)
                    ids = [record.id for record in records]
                rows += len(records)
                before = len(seen)
                seen.update(ids)
                duplicates = duplicates or len(seen) - before != len(ids)
    newest_column = "deleted_at" if tombstones else "updated_at"
    (newest,) = conn.execute(
        sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(newest_column), table)
    ).fetchone() or (None,)
    conn.execute(sql.SQL("ANALYZE {}").format(table))  # temporary tables get no autovacuum
    return Staged(table, rows, duplicates or tombstones, newest, rejected or [])


def _copy_one_by_one(
    cursor: psycopg.Cursor[Any],
    table: sql.Identifier,
    names: list[str],
    as_text: CopyText,
    records: list[Any],
    rejected: list[Rejected],
) -> list[Any]:
    """Quarantine's slow path for a page Postgres rejected: each record on its own."""
    kept = []
    for record in records:
        try:
            with (
                _rejections_named(type(record), [record.id]),
                copy_into(cursor, table, names) as copy,
            ):
                copy.write(as_text([record]))
        except RecordValidationError as error:
            rejected.append(
                Rejected(
                    record.id, error.field, error.problem, msgspec.json.encode(record).decode()
                )
            )
        else:
            kept.append(record)
    return kept


_COPY_CONTEXT = re.compile(r"line (\d+)(?:, column (\w+))?")


@contextmanager
def _rejections_named(record_type: type[msgspec.Struct], ids: list[int]) -> Iterator[None]:
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
            endpoint_path(record_type),  # type: ignore[arg-type]
            record_id,
            where.group(2) or "?",
            problem,
        ) from error


def drop_staging(conn: psycopg.Connection[Any], staged: Staged) -> None:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(staged.table))


# --- the merge: one short transaction, the only time raw is locked ------------------------


@dataclass(frozen=True)
class Timeouts:
    lock_seconds: float = 60.0
    statement_seconds: float = 900.0


@dataclass(frozen=True)
class MergeResult:
    inserted: int = 0
    updated: int = 0
    lock_wait_seconds: float = 0.0
    merge_seconds: float = 0.0  # from the lock granted to the commit: what a writer waits for
    deleted_users: int = 0
    deleted_entries: int = 0
    recorded: int = 0  # tombstones recorded in raw.deletions (rows deleted or never loaded)


@contextmanager
def _merge_transaction(
    conn: psycopg.Connection[Any], tables: list[sql.Identifier], timeouts: Timeouts
) -> Iterator[Callable[[], tuple[float, float]]]:
    """A transaction holding ``tables`` against other writers; yields (lock wait, held) timer."""
    started = time.perf_counter()
    granted = started
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{int(timeouts.lock_seconds * 1000)}ms'")
            conn.execute(
                f"SET LOCAL statement_timeout = '{int(timeouts.statement_seconds * 1000)}ms'"
            )
            conn.execute(
                sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(tables)
                )
            )
            granted = time.perf_counter()
            yield lambda: (granted - started, time.perf_counter() - granted)
    except psycopg.errors.LockNotAvailable as error:
        names = ", ".join(t.as_string(conn) for t in tables)
        raise MergeLockTimeoutError(
            f"could not lock {names} for the merge within {timeouts.lock_seconds:g} s: another "
            "load (or a migration) held it. Nothing was written; the next run loads it."
        ) from error


def merge_records(
    conn: psycopg.Connection[Any],
    record_type: type[Record],
    staged: Staged,
    timeouts: Timeouts,
) -> MergeResult:
    """Upsert the staged rows, record quarantined ones and move the cursor, in one transaction."""
    names = [name for name, _ in columns(record_type)]
    target = _table(record_type)
    source: sql.Composable = staged.table
    if staged.duplicates:  # a row that changed while we paged through: its newest version
        source = sql.SQL("(SELECT DISTINCT ON (id) * FROM {} ORDER BY id, updated_at DESC)").format(
            staged.table
        )
    column_list = sql.SQL(", ").join(map(sql.Identifier, names))
    changed = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names if n != "id"
    )
    current = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in names)
    arriving = sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) for n in names)
    # a version not newer than the row's deletion never brings it back
    not_deleted = sql.SQL(
        "NOT EXISTS (SELECT FROM {} AS d WHERE d.entity = %(entity)s AND d.id = s.id "
        "AND d.deleted_at >= s.updated_at)"
    ).format(DELETIONS)
    # ids above every id in raw cannot conflict: a plain INSERT, twice as fast as an upsert
    append = sql.SQL(
        "INSERT INTO {target} ({columns}) SELECT {columns} FROM {source} AS s "
        "WHERE s.id > %(max_id)s AND {not_deleted}"
    ).format(target=target, columns=column_list, source=source, not_deleted=not_deleted)
    upsert = sql.SQL(
        "WITH merged AS ("
        "INSERT INTO {target} AS t ({columns}) SELECT {columns} FROM {source} AS s "
        "WHERE s.id <= %(max_id)s AND {not_deleted} "
        "ON CONFLICT (id) DO UPDATE SET {changed}, _ingested_at = now() "
        # the same (id, updated_at) again changes nothing; an older version never wins
        "WHERE t.updated_at <= EXCLUDED.updated_at AND ({current}) IS DISTINCT FROM ({arriving}) "
        "RETURNING xmax = 0 AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged"
    ).format(
        target=target,
        columns=column_list,
        source=source,
        not_deleted=not_deleted,
        changed=changed,
        current=current,
        arriving=arriving,
    )
    with _merge_transaction(conn, [target], timeouts) as timer, conn.cursor() as cursor:
        inserted = updated = 0
        if staged.rows:
            cursor.execute(sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(target))
            params = {"entity": record_type.endpoint, "max_id": (cursor.fetchone() or (0,))[0]}
            cursor.execute(upsert, params)
            inserted, updated = cursor.fetchone() or (0, 0)
            cursor.execute(append, params)
            inserted += cursor.rowcount
            _resolve_rejections(cursor, record_type, staged)
        if staged.rejected:
            _quarantine(cursor, record_type, staged.rejected)
        _move_cursor(cursor, record_type.endpoint, staged.newest, staged.rows)
        waited, held = timer()
    return MergeResult(inserted, updated, waited, held)


def _resolve_rejections(
    cursor: psycopg.Cursor[Any], record_type: type[Record], staged: Staged
) -> None:
    """A quarantined record that now arrived valid leaves the quarantine."""
    rejected = _rejected(record_type)
    cursor.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(rejected))
    if (cursor.fetchone() or (False,))[0]:
        cursor.execute(
            sql.SQL("DELETE FROM {} WHERE id IN (SELECT id FROM {})").format(rejected, staged.table)
        )


def _quarantine(
    cursor: psycopg.Cursor[Any], record_type: type[Record], rejected: list[Rejected]
) -> None:
    with copy_into(cursor, _rejected(record_type), ["id", "field", "error", "record"]) as copy:
        for reject in rejected:
            copy.write_row([reject.record_id, reject.field, reject.problem, reject.record])


def count_rejected(conn: psycopg.Connection[Any], record_type: type[Record]) -> int:
    (count,) = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(_rejected(record_type))
    ).fetchone() or (0,)
    return int(count)


def merge_tombstones(
    conn: psycopg.Connection[Any], staged: Staged, timeouts: Timeouts
) -> MergeResult:
    """Delete the rows the staged tombstones name and record each deletion in raw.deletions.

    A row whose updated_at is newer than its tombstone was re-created upstream and stays.
    A tombstone of a row raw never had (created and deleted between two runs) is recorded
    too, so a late older version of it cannot load afterwards.
    """
    source = sql.SQL(
        "(SELECT DISTINCT ON (entity, id) entity, id, deleted_at FROM {} "
        "ORDER BY entity, id, deleted_at DESC)"
    ).format(staged.table)
    users, entries = sql.Identifier(SCHEMA, "users"), sql.Identifier(SCHEMA, "journal_entries")
    absent = sql.SQL(
        "INSERT INTO {deletions} AS d (entity, id, user_id, played_at, deleted_at) "
        "SELECT s.entity, s.id, CASE WHEN s.entity = 'users' THEN s.id END, NULL, s.deleted_at "
        "FROM {source} AS s WHERE "
        "(s.entity = 'users' AND NOT EXISTS (SELECT FROM {users} AS t WHERE t.id = s.id)) OR "
        "(s.entity = 'journal_entries' AND NOT EXISTS (SELECT FROM {entries} AS t WHERE t.id = s.id)) "
        "ON CONFLICT (entity, id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at, "
        "ingested_at = now() WHERE d.deleted_at < EXCLUDED.deleted_at"
    ).format(deletions=DELETIONS, source=source, users=users, entries=entries)

    def delete(table: sql.Identifier, entity: str, user_id: str, played_at: str) -> sql.Composed:
        return sql.SQL(
            "WITH gone AS (DELETE FROM {table} AS t USING {source} AS s "
            "WHERE s.entity = {entity} AND t.id = s.id AND t.updated_at <= s.deleted_at "
            "RETURNING t.id, {user_id} AS user_id, {played_at} AS played_at, s.deleted_at), "
            "recorded AS (INSERT INTO {deletions} (entity, id, user_id, played_at, deleted_at) "
            "SELECT {entity}, id, user_id, played_at, deleted_at FROM gone "
            "ON CONFLICT (entity, id) DO UPDATE SET user_id = EXCLUDED.user_id, "
            "played_at = EXCLUDED.played_at, deleted_at = EXCLUDED.deleted_at, "
            "ingested_at = now() RETURNING 1) "
            "SELECT count(*) FROM recorded"
        ).format(
            table=table,
            source=source,
            entity=sql.Literal(entity),
            user_id=sql.SQL(user_id),
            played_at=sql.SQL(played_at),
            deletions=DELETIONS,
        )

    with (
        _merge_transaction(conn, [users, entries, DELETIONS], timeouts) as timer,
        conn.cursor() as cursor,
    ):
        recorded = deleted_users = deleted_entries = 0
        if staged.rows:
            cursor.execute(absent)
            recorded = cursor.rowcount
            cursor.execute(delete(entries, "journal_entries", "t.user_id", "t.created_at"))
            deleted_entries = (cursor.fetchone() or (0,))[0]
            cursor.execute(delete(users, "users", "t.id", "NULL::timestamptz"))
            deleted_users = (cursor.fetchone() or (0,))[0]
        _move_cursor(cursor, Tombstone.endpoint, staged.newest, staged.rows)
        waited, held = timer()
    return MergeResult(
        0,
        0,
        waited,
        held,
        deleted_users,
        deleted_entries,
        recorded + deleted_users + deleted_entries,
    )
