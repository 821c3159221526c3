"""PostgresResource against a real Postgres: the COPY helper joins the caller's transaction."""

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
import pytest
from data_platform.resources import copy_into


def copy_rows(
    cursor: psycopg.Cursor[Any], table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    with copy_into(cursor, table, columns) as copy:
        for row in rows:
            copy.write_row(row)


def test_copy_into_loads_inside_the_callers_transaction(warehouse):
    with warehouse.connect() as conn:
        conn.execute("CREATE TABLE scores (id bigint PRIMARY KEY, name text, score int)")
    rows = [(1, "tab\tand\\backslash", 10), (2, "line\nbreak", None)]
    with warehouse.connect() as conn, conn.cursor() as cursor:
        copy_rows(cursor, "public.scores", ["id", "name", "score"], rows)
    with warehouse.connect() as conn:
        assert conn.execute("SELECT id, name, score FROM scores ORDER BY id").fetchall() == rows


def test_a_failed_copy_leaves_nothing_behind(warehouse):
    with warehouse.connect() as conn:
        conn.execute("CREATE TABLE scores (id bigint PRIMARY KEY, score int)")
        conn.execute("INSERT INTO scores VALUES (1, 1)")
    with (
        pytest.raises(psycopg.errors.UniqueViolation),
        warehouse.connect() as conn,
        conn.cursor() as cursor,
    ):
        copy_rows(cursor, "scores", ["id", "score"], [(2, 2), (3, 3)])
        copy_rows(cursor, "scores", ["id", "score"], [(1, 9)])
    with warehouse.connect() as conn:
        assert conn.execute("SELECT id, score FROM scores").fetchall() == [(1, 1)]


def test_connection_errors_name_the_server_and_database(warehouse):
    unreachable = warehouse.model_copy(update={"port": 1, "connect_timeout_seconds": 2})
    expected = r"cannot connect to Postgres at 127\.0\.0\.1:1 database"
    with pytest.raises(ConnectionError, match=expected), unreachable.connect():
        pass
