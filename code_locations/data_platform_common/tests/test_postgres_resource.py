"""PostgresResource against a real Postgres: the COPY helper joins the caller's transaction."""

import psycopg
import pytest


def test_copy_rows_loads_inside_the_callers_transaction(warehouse):
    with warehouse.connect() as conn:
        conn.execute("CREATE TABLE scores (id bigint PRIMARY KEY, name text, score int)")
    rows = [(1, "tab\tand\\backslash", 10), (2, "line\nbreak", None)]
    with warehouse.connect() as conn, conn.cursor() as cursor:
        assert warehouse.copy_rows(cursor, "public.scores", ["id", "name", "score"], rows) == 2
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
        warehouse.copy_rows(cursor, "scores", ["id", "score"], [(2, 2), (3, 3)])
        warehouse.copy_rows(cursor, "scores", ["id", "score"], [(1, 9)])
    with warehouse.connect() as conn:
        assert conn.execute("SELECT id, score FROM scores").fetchall() == [(1, 1)]


def test_connection_errors_name_the_server_and_database(warehouse):
    unreachable = warehouse.model_copy(update={"port": 1, "connect_timeout_seconds": 2})
    expected = r"cannot connect to Postgres at 127\.0\.0\.1:1 database"
    with pytest.raises(ConnectionError, match=expected), unreachable.connect():
        pass
