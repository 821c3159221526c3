"""Loads into Postgres schema raw: new ids straight into raw, changes through a short merge.

A load is one transaction. Fetch and validate: rows whose ids lie above raw's max id are
COPYed straight into raw as the pages download, under the ROW EXCLUSIVE lock COPY takes
(SELECT never waits for it); every other row (a change, a re-read, an id raw.deletions
holds) is COPYed into a session-private temporary table. Merge: a short step locks raw
against other writers only (SHARE ROW EXCLUSIVE does not conflict with SELECT either),
upserts the staged rows and moves the cursor, with lock_timeout and statement_timeout set.
Writers of one endpoint are serialized by an advisory lock (see ``append_and_stage``). Nothing
is visible before the commit: a failure or a kill anywhere leaves raw and its cursor exactly
as they were, and the next run re-reads what this one did not commit. Tombstones and loads
with quarantine on stage every row (``stage``), outside the transaction.

Raw keeps the version of each row it READ LAST, not the one with the largest updated_at.
Upstream stamps can go backwards: Postgres' now() is a transaction's start, so a transaction
that began earlier but commits later writes an older stamp over a newer one, and the
upstream's truth is the version committed last. A read shows the versions committed by then,
so a later read shows a later (or the same) version. Every row therefore carries
``_fetched_at``: when its page arrived (the reader's clock, strictly increasing within one
fetch, so page order breaks ties). Within a fetch the last-read version of an id wins; the
merge replaces a row only with a version read later that differs (a re-read in the look-back
window changes nothing, not even ``_fetched_at``); a run that read earlier but merges later
never overwrites a newer read.

Tombstones are ordered the same way, helped by the stamps, because the deletion feed is read
at other moments than the rows: a tombstone removes (and keeps out) a version only when that
version was read no later than the tombstone AND is stamped no later than the deletion. A
version read after the tombstone was read existed after the deletion (re-created); one
stamped after it was re-created before we read the tombstone. A run reads the tombstone feed
before the rows, so a re-creation is normally read after its tombstone. Ambiguous, and
resolved as a deletion: a re-creation stamped before its deletion (a late commit) and read
before the tombstone (deleted and re-created between a run's two reads); the row comes back
with its next version.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
_LAYOUT = 3  # 2: _fetched_at on the record tables and raw.deletions; 3: _ingested_at indexes
# when a version (or tombstone) was read; rows that existed before the column get the
# migration's time (a fast default, no rewrite): every later read is later than theirs
FETCHED_AT = "_fetched_at"
_FETCHED_AT_COLUMN = sql.SQL("_fetched_at timestamptz NOT NULL DEFAULT now()")


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
    indexes = {
        name
        for (name,) in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", [SCHEMA]
        )
    }
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
                "ingested_at timestamptz NOT NULL DEFAULT now(), {}, PRIMARY KEY (entity, id))"
            ).format(DELETIONS, _FETCHED_AT_COLUMN),
            sql.SQL("CREATE INDEX deletions_ingested_at ON {} (ingested_at)").format(DELETIONS),
        ],
    }
    for table_name_, statements in fixed.items():
        if table_name_ not in existing:
            plan += statements
    if FETCHED_AT not in existing.get("deletions", {FETCHED_AT: False}):
        plan.append(sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(DELETIONS, _FETCHED_AT_COLUMN))
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
            definitions.append(_FETCHED_AT_COLUMN.format())
            plan.append(
                sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(definitions))
            )
        else:
            if FETCHED_AT not in have:
                plan.append(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(table, _FETCHED_AT_COLUMN)
                )
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
        # dbt reads the rows ingested since its last build (dbt/macros/read_watermark.sql):
        # a range over this index, not a scan of the table
        if f"{record_type.table}_ingested_at" not in indexes:
            plan.append(
                sql.SQL("CREATE INDEX {} ON {} (_ingested_at)").format(
                    sql.Identifier(f"{record_type.table}_ingested_at"), table
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
    rows: int  # rows in the staging table
    duplicates: bool  # some id came twice (it changed while we paged through)
    newest: datetime | None
    rejected: list[Rejected]
    appended: int = 0  # rows COPYed straight into raw (ids above its max), not staged
    appended_after_id: int | None = None  # raw's max id before them

    @property
    def fetched(self) -> int:
        return self.rows + self.appended


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
    table = _create_staging(conn, record_type)
    names = _copy_columns(record_type)
    as_text, clock = CopyText(record_type), _ReadClock()
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
                    copy.write(_lines(as_text, records, clock(records)))
                    copied += ids
                    before = len(seen)
                    seen.update(ids)
                    duplicates = duplicates or len(seen) - before != len(ids)
            rows = len(copied)
        else:  # quarantine: a COPY per page, so a rejected page can be taken apart
            for records in pages:
                ids = [record.id for record in records]
                read_at = clock(records)
                try:
                    with (
                        _rejections_named(record_type, ids),
                        copy_into(cursor, table, names) as copy,
                    ):
                        copy.write(_lines(as_text, records, read_at))
                except RecordValidationError:
                    records = _copy_one_by_one(
                        cursor, table, names, as_text, records, rejected, read_at
                    )
                    ids = [record.id for record in records]
                rows += len(records)
                before = len(seen)
                seen.update(ids)
                duplicates = duplicates or len(seen) - before != len(ids)
    newest = _newest(conn, table, "deleted_at" if tombstones else "updated_at")
    conn.execute(sql.SQL("ANALYZE {}").format(table))  # temporary tables get no autovacuum
    return Staged(table, rows, duplicates or tombstones, newest, rejected or [])


def _create_staging(
    conn: psycopg.Connection[Any], record_type: type[msgspec.Struct]
) -> sql.Identifier:
    table = sql.Identifier(f"staging_{record_type.table}")  # type: ignore[attr-defined]
    conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(table))
    conn.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} ({})").format(
            table,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                for c, t in [*columns(record_type), (FETCHED_AT, "timestamptz")]
            ),
        )
    )
    return table


class _ReadClock:
    """Each page's read time as COPY text: when its response arrived (``Page.read_at``; a
    plain list counts as read now), strictly increasing within one fetch so that page order
    decides between two versions of an id read in one fetch."""

    def __init__(self) -> None:
        self.last: datetime | None = None

    def __call__(self, page: list[Any]) -> str:
        read_at = getattr(page, "read_at", None) or datetime.now(UTC)
        if self.last is not None and read_at <= self.last:
            read_at = self.last + timedelta(microseconds=1)
        self.last = read_at
        return read_at.isoformat()


def _lines(as_text: CopyText, records: list[Any], read_at: str) -> str:
    """COPY lines of ``records`` with their read time as the last column."""
    return as_text(records).replace("\n", f"\t{read_at}\n")


def _copy_columns(record_type: type[msgspec.Struct]) -> list[str]:
    return [*(column for column, _ in columns(record_type)), FETCHED_AT]


def _newest(conn: psycopg.Connection[Any], table: sql.Identifier, column: str) -> datetime | None:
    (newest,) = conn.execute(
        sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column), table)
    ).fetchone() or (None,)
    return newest  # type: ignore[no-any-return]


# --- append and stage: new ids straight into raw, the rest through staging -----------------

STAGE_BATCH_ROWS = 50_000  # rows for staging are COPYed in batches, between runs of new ids


def append_and_stage(
    conn: psycopg.Connection[Any],
    record_type: type[Record],
    pages: Iterable[list[Any]],
    timeouts: Timeouts,
) -> Staged:
    """Inside the caller's transaction: COPY rows with ids above raw's max straight into raw,
    and only the others (changed rows, ids raw has or had) into the staging table.

    Why: staging every row and then INSERT ... SELECT writes each new row twice; on a first
    load or an append-mostly upstream that is nearly all of them, and the load ran at half of
    COPY's speed. Why it keeps the guarantees: the COPY into raw takes only ROW EXCLUSIVE,
    which no reader's ACCESS SHARE waits for; nothing is visible until the caller's
    transaction commits with the merge and the cursor (a failure or a kill leaves raw as it
    was); writers of one endpoint are serialized by a transaction-scoped advisory lock, taken
    without waiting: a second load at the same time stages every row and merges after this
    one commits, as before. The ROW EXCLUSIVE lock is taken only when the first row arrives,
    after any merge in progress, so raw's max id cannot move underneath; ids raw.deletions
    holds above it (created and deleted upstream between two loads) go through staging, where
    the merge keeps deleted versions out.
    """
    endpoint = record_type.endpoint
    target = _table(record_type)
    table = _create_staging(conn, record_type)
    names = _copy_columns(record_type)
    as_text = CopyText(record_type)
    (owner,) = conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtext(%s))", [f"raw-load:{endpoint}"]
    ).fetchone() or (False,)
    state = _Routing(owner=bool(owner))

    def lock_raw() -> None:
        """Wait for any merge of raw to end, then note its max id and deleted ids above it."""
        conn.execute(f"SET LOCAL lock_timeout = '{int(timeouts.lock_seconds * 1000)}ms'")
        try:
            conn.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(target))
        except psycopg.errors.LockNotAvailable as error:
            raise MergeLockTimeoutError(
                f"could not lock {table_name(record_type)} within {timeouts.lock_seconds:g} s: "
                "another load's merge (or a migration) held it. Nothing was written."
            ) from error
        conn.execute("RESET lock_timeout")
        (state.max_id,) = conn.execute(
            sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(target)
        ).fetchone() or (0,)
        state.deleted = {
            row_id
            for (row_id,) in conn.execute(
                sql.SQL("SELECT id FROM {} WHERE entity = %s AND id > %s").format(DELETIONS),
                [endpoint, state.max_id],
            )
        }

    last_appended: list[str] = []  # updated_at of each appended batch's last row
    with conn.cursor() as cursor:
        for direct, group in itertools.groupby(state.route(pages, lock_raw), key=lambda r: r[0]):
            copied: list[int] = []
            with (
                _rejections_named(record_type, copied),
                copy_into(cursor, target if direct else table, names, queued=True) as copy,
            ):
                for _, pieces, ids in group:
                    for records, read_at in pieces:
                        copy.write(_lines(as_text, records, read_at))
                    copied += ids
                    if direct:
                        last_appended.append(pieces[-1][0][-1].updated_at)
            if direct:
                state.appended += len(copied)
            else:
                state.staged += len(copied)
    stamps = [_newest(conn, table, "updated_at")] if state.staged else []
    if last_appended:
        stamps.append(_newest_appended(conn, last_appended))
    newest = max((s for s in stamps if s is not None), default=None)
    if state.staged:
        conn.execute(sql.SQL("ANALYZE {}").format(table))  # temporary tables get no autovacuum
    return Staged(
        table,
        state.staged,
        state.duplicates,
        newest,
        [],
        appended=state.appended,
        appended_after_id=state.max_id if state.appended else None,
    )


def _newest_appended(conn: psycopg.Connection[Any], last: list[str]) -> datetime | None:
    """The newest updated_at of the appended rows, from each batch's last row: pages come in
    (updated_at, id) order, so that is the newest unless the upstream broke its order, and
    then a lower cursor only re-reads rows (idempotently). Postgres reads the stamps as the
    COPY did; the rows themselves are not scanned."""
    (newest,) = conn.execute(
        "SELECT max(s::timestamptz) FROM unnest(%s::text[]) AS s", [last]
    ).fetchone() or (None,)
    return newest  # type: ignore[no-any-return]


@dataclass
class _Routing:
    """Which rows of a fetch go straight into raw: ids above its max, first seen, not deleted."""

    owner: bool  # this load holds the endpoint's advisory lock: it may append
    max_id: int | None = None  # raw's max id, once raw is locked
    deleted: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)
    unindexed: list[list[int]] = field(default_factory=list)  # seen, not yet in ``seen``
    seen_max: int | None = None
    page_min: int = 0
    duplicates: bool = False
    appended: int = 0
    staged: int = 0

    def route(
        self, pages: Iterable[list[Any]], lock_raw: Callable[[], None]
    ) -> Iterator[tuple[bool, list[tuple[list[Any], str]], list[int]]]:
        """(True, pieces, ids) to append, (False, pieces, ids) to stage, where a piece is
        (records, their read time); staged rows are gathered into batches, so runs of
        appended pages share one COPY."""
        waiting: list[tuple[list[Any], str]] = []
        waiting_ids: list[int] = []
        clock = _ReadClock()
        for records in pages:
            if not records:
                continue
            read_at = clock(records)
            ids = [r.id for r in records]
            if not self._first_time(ids):  # an id came twice (it changed while we paged)
                self.duplicates = True
                # the whole page through staging: the merge takes the version read last
                waiting.append((records, read_at))
                waiting_ids += ids
            elif not self.owner:
                yield False, [(records, read_at)], ids
                continue
            else:
                if self.max_id is None:
                    lock_raw()
                above = self.max_id or 0
                if self.page_min > above and (not self.deleted or self.deleted.isdisjoint(ids)):
                    yield True, [(records, read_at)], ids  # the common page: every row new, once
                    continue
                new = [r for r in records if r.id > above and r.id not in self.deleted]
                if new:
                    yield True, [(new, read_at)], [r.id for r in new]
                old = [r for r in records if r.id <= above or r.id in self.deleted]
                if old:
                    waiting.append((old, read_at))
                    waiting_ids += [r.id for r in old]
            if len(waiting_ids) >= STAGE_BATCH_ROWS:
                yield False, waiting, waiting_ids
                waiting, waiting_ids = [], []
        if waiting:
            yield False, waiting, waiting_ids

    def _first_time(self, ids: list[int]) -> bool:
        """Note ``ids`` as seen; False if one of them came before. A page whose ids all lie
        above every earlier id (each page of a first load) is checked on its own, so a
        million ids never go through one big set."""
        self.page_min, top = min(ids), max(ids)
        if self.seen_max is not None and self.page_min <= self.seen_max:
            for earlier in self.unindexed:
                self.seen.update(earlier)
            self.unindexed.clear()
            before = len(self.seen)
            self.seen.update(ids)
            unique = len(self.seen) - before == len(ids)
        else:
            unique = len(set(ids)) == len(ids)
            self.unindexed.append(ids)
        self.seen_max = top if self.seen_max is None else max(self.seen_max, top)
        return unique


def _copy_one_by_one(
    cursor: psycopg.Cursor[Any],
    table: sql.Identifier,
    names: list[str],
    as_text: CopyText,
    records: list[Any],
    rejected: list[Rejected],
    read_at: str,
) -> list[Any]:
    """Quarantine's slow path for a page Postgres rejected: each record on its own."""
    kept = []
    for record in records:
        try:
            with (
                _rejections_named(type(record), [record.id]),
                copy_into(cursor, table, names) as copy,
            ):
                copy.write(_lines(as_text, [record], read_at))
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
    if staged.duplicates:  # a row that changed while we paged through: the version read last
        source = sql.SQL(
            "(SELECT DISTINCT ON (id) * FROM {} ORDER BY id, _fetched_at DESC)"
        ).format(staged.table)
    column_list = sql.SQL(", ").join(map(sql.Identifier, [*names, FETCHED_AT]))
    changed = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
        for n in [*names, FETCHED_AT]
        if n != "id"
    )
    current = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in names)
    arriving = sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) for n in names)
    # a version read no later than the row's tombstone and stamped no later than its deletion
    # never brings it back (see the module's docstring)
    not_deleted = sql.SQL(
        "NOT EXISTS (SELECT FROM {} AS d WHERE d.entity = %(entity)s AND d.id = s.id "
        "AND d.deleted_at >= s.updated_at AND d._fetched_at >= s._fetched_at)"
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
        # a version read later that differs wins, whatever its updated_at; the same version
        # re-read changes nothing; a version read earlier (a slower run) never wins
        "WHERE t._fetched_at < EXCLUDED._fetched_at "
        "AND ({current}) IS DISTINCT FROM ({arriving}) "
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
        inserted, updated = staged.appended, 0
        if staged.rows:
            cursor.execute(sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(target))
            params = {"entity": record_type.endpoint, "max_id": (cursor.fetchone() or (0,))[0]}
            cursor.execute(upsert, params)
            upserted, updated = cursor.fetchone() or (0, 0)
            inserted += upserted
            cursor.execute(append, params)
            inserted += cursor.rowcount
        if staged.fetched:
            _resolve_rejections(cursor, record_type, staged)
        if staged.rejected:
            _quarantine(cursor, record_type, staged.rejected)
        _move_cursor(cursor, record_type.endpoint, staged.newest, staged.fetched)
        waited, held = timer()
    return MergeResult(inserted, updated, waited, held)


def _resolve_rejections(
    cursor: psycopg.Cursor[Any], record_type: type[Record], staged: Staged
) -> None:
    """A quarantined record that now arrived valid (staged, or appended) leaves the quarantine."""
    rejected = _rejected(record_type)
    cursor.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(rejected))
    if (cursor.fetchone() or (False,))[0]:
        cursor.execute(
            sql.SQL(
                "DELETE FROM {} WHERE id IN (SELECT id FROM {}) "
                "OR id IN (SELECT id FROM {} WHERE id > %s)"
            ).format(rejected, staged.table, _table(record_type)),
            [staged.appended_after_id if staged.appended else None],
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

    A row read after its tombstone was read, or stamped after its deletion, was re-created
    upstream and stays. A tombstone of a row raw never had (created and deleted between two
    runs) is recorded too, so a version of it read before the tombstone cannot load
    afterwards. A tombstone re-read by the look-back changes nothing: raw.deletions keeps
    when it was first read.
    """
    # a tombstone is as old as its first read: a re-read must not delete a row re-created
    # (and read) since then
    source = sql.SQL(
        "(SELECT DISTINCT ON (s.entity, s.id) s.entity, s.id, s.deleted_at, "
        "coalesce(d._fetched_at, s._fetched_at) AS _fetched_at FROM {} AS s "
        "LEFT JOIN {} AS d ON d.entity = s.entity AND d.id = s.id AND d.deleted_at = s.deleted_at "
        "ORDER BY s.entity, s.id, s._fetched_at DESC)"
    ).format(staged.table, DELETIONS)
    users, entries = sql.Identifier(SCHEMA, "users"), sql.Identifier(SCHEMA, "journal_entries")
    absent = sql.SQL(
        "INSERT INTO {deletions} AS d (entity, id, user_id, played_at, deleted_at, _fetched_at) "
        "SELECT s.entity, s.id, CASE WHEN s.entity = 'users' THEN s.id END, NULL, s.deleted_at, "
        "s._fetched_at "
        "FROM {source} AS s WHERE "
        "(s.entity = 'users' AND NOT EXISTS (SELECT FROM {users} AS t WHERE t.id = s.id)) OR "
        "(s.entity = 'journal_entries' AND NOT EXISTS (SELECT FROM {entries} AS t WHERE t.id = s.id)) "
        "ON CONFLICT (entity, id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at, "
        "_fetched_at = EXCLUDED._fetched_at, ingested_at = now() "
        "WHERE d._fetched_at < EXCLUDED._fetched_at AND d.deleted_at <> EXCLUDED.deleted_at"
    ).format(deletions=DELETIONS, source=source, users=users, entries=entries)

    def delete(table: sql.Identifier, entity: str, user_id: str, played_at: str) -> sql.Composed:
        return sql.SQL(
            "WITH gone AS (DELETE FROM {table} AS t USING {source} AS s "
            "WHERE s.entity = {entity} AND t.id = s.id AND t.updated_at <= s.deleted_at "
            "AND t._fetched_at <= s._fetched_at "
            "RETURNING t.id, {user_id} AS user_id, {played_at} AS played_at, s.deleted_at, "
            "s._fetched_at), "
            "recorded AS (INSERT INTO {deletions} "
            "(entity, id, user_id, played_at, deleted_at, _fetched_at) "
            "SELECT {entity}, id, user_id, played_at, deleted_at, _fetched_at FROM gone "
            "ON CONFLICT (entity, id) DO UPDATE SET user_id = EXCLUDED.user_id, "
            "played_at = EXCLUDED.played_at, deleted_at = EXCLUDED.deleted_at, "
            "_fetched_at = EXCLUDED._fetched_at, ingested_at = now() RETURNING 1) "
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
