"""pytest fixtures shared by every location's tests: real Postgres, real Redis, a real upstream.

Registered as a pytest plugin (entry point ``pytest11``), so any test in the workspace can ask
for them. Postgres comes from, in order: ``TEST_POSTGRES_URL``; a testcontainers Postgres when
a Docker engine answers a ping; the embedded server started here as a child process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest
from data_platform.resources import PostgresResource, RedisResource

from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.postgres import LocalPostgres
from data_platform_dev.stack.processes import free_port
from data_platform_dev.stack.redis import LocalRedis


def docker_answers() -> bool:
    """True only when a Docker engine answers; the client binary alone is not enough."""
    try:
        import docker

        return bool(docker.from_env(timeout=2).ping())
    except Exception:  # noqa: BLE001 - no engine, no socket, no SDK: all mean "no Docker"
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A superuser URL of a real Postgres server for the whole session."""
    if configured := os.environ.get("TEST_POSTGRES_URL"):
        yield configured
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    # not under pytest's basetemp: another pytest session resets that folder to mode 0700,
    # which would lock out the unprivileged user Postgres runs as under root
    state = Path(tempfile.mkdtemp(prefix="platform-test-postgres-"))
    server = LocalPostgres(
        state / "data", free_port(), secrets.token_hex(12), state / "postgres.log"
    )
    try:
        server.start()
        yield server.url("postgres")
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


def _resource_for(url: str, database: str) -> PostgresResource:
    parts = urlparse(url)
    return PostgresResource(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or "",
        database=database,
        sslmode="disable",
    )


@pytest.fixture
def new_database(postgres_url: str) -> Iterator[Callable[[str], PostgresResource]]:
    """Create empty databases for one test; they are dropped afterwards."""
    created: list[str] = []

    def create(prefix: str = "test") -> PostgresResource:
        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _resource_for(postgres_url, name)

    yield create
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def warehouse(new_database: Callable[[str], PostgresResource]) -> PostgresResource:
    """An empty warehouse database of its own for one test."""
    return new_database("warehouse")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    state = tmp_path_factory.mktemp("redis")
    server = LocalRedis(state / "data", free_port(), secrets.token_hex(12), state / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def online_store(redis_server: LocalRedis) -> RedisResource:
    """The session's Redis, emptied for this test."""
    redis_server.client().flushall()
    return RedisResource(host="127.0.0.1", port=redis_server.port, password=redis_server.password)


@pytest.fixture
def start_journal_api(tmp_path: Path) -> Iterator[Callable[..., JournalApiProcess]]:
    """Start the development upstream as a real server process with the given options."""
    started: list[JournalApiProcess] = []

    def start(**options: Any) -> JournalApiProcess:
        options.setdefault("end", "2026-06-30")  # fixed, so expectations do not move with today
        api = JournalApiProcess(free_port(), tmp_path / f"journal-api-{len(started)}.log", options)
        started.append(api.start())
        return api

    yield start
    for api in started:
        with contextlib.suppress(Exception):
            api.stop()
