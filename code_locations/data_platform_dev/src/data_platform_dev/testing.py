"""pytest fixtures shared by every location's tests: real Postgres, real Redis, a real upstream.

Registered as a pytest plugin (entry point ``pytest11``), so any test in the workspace can ask
for them. Postgres comes from, in order: ``TEST_POSTGRES_URL``; a testcontainers Postgres when
a Docker engine answers a ping; the embedded server started here as a child process.

``warehouse`` and ``new_database`` connect as the superuser; ``team_databases`` gives the
Kubernetes grants instead (the stores chart's team-roles.sh), for a test that runs a location
as its team's role.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest
from data_platform import settings
from data_platform.resources import PostgresResource, RedisResource

from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.postgres import (
    TEAMS,
    LocalPostgres,
    apply_team_roles,
    team_roles,
    team_roles_script,
)
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


@dataclass(frozen=True)
class TeamDatabases:
    """A warehouse, a Dagster and a Feast registry database with the chart's grants; one login
    role per team (postgres.teamRoles keys: instance, ingestion, transformation, featureStore)."""

    admin: PostgresResource  # the superuser, on the warehouse
    databases: dict[str, str]  # chart key (dagster, warehouse, featureRegistry) -> name
    roles: dict[str, str]  # team -> role
    passwords: dict[str, str]  # team -> password

    def resource(self, team: str, database: str = "warehouse") -> PostgresResource:
        """A connection as ``team``'s role to one of the three databases."""
        return PostgresResource(
            host=self.admin.host,
            port=self.admin.port,
            user=self.roles[team],
            password=self.passwords[team],
            database=self.databases[database],
            sslmode=self.admin.sslmode,
        )

    def environment(self, team: str) -> dict[str, str]:
        """The env contract's Postgres variables as the team's code server gets them."""
        return {
            settings.POSTGRES_HOST: self.admin.host,
            settings.POSTGRES_PORT: str(self.admin.port),
            settings.POSTGRES_USER: self.roles[team],
            settings.POSTGRES_PASSWORD: self.passwords[team],
            settings.WAREHOUSE_DB: self.databases["warehouse"],
            settings.FEAST_REGISTRY_DB: self.databases["featureRegistry"],
        }


@pytest.fixture(scope="session")
def _team_roles(postgres_url: str) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(team -> role, team -> password) for the session: the chart's role names with a suffix,
    so a shared TEST_POSTGRES_URL server keeps its own roles; dropped at the end."""
    suffix = secrets.token_hex(3)
    roles = {team: f"{role}_{suffix}" for team, role in team_roles().items()}
    yield roles, {team: secrets.token_hex(16) for team in TEAMS}
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for role in roles.values():
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def team_databases(
    postgres_url: str,
    _team_roles: tuple[dict[str, str], dict[str, str]],
    new_database: Callable[[str], PostgresResource],
) -> TeamDatabases:
    """Three new databases with the stores chart's team-roles.sh run on them, as its Kubernetes
    hook runs it: each team's role can do its own work and nothing of another team's."""
    roles, passwords = _team_roles
    created = {
        "dagster": new_database("dagster"),
        "warehouse": new_database("warehouse"),
        "featureRegistry": new_database("feast_registry"),
    }
    databases = {key: resource.database for key, resource in created.items()}
    admin = created["warehouse"]
    script = team_roles_script(databases, roles, owner=admin.user)
    apply_team_roles(urlparse(postgres_url)._replace(path="/postgres").geturl(), passwords, script)
    return TeamDatabases(admin, databases, roles, passwords)


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
