"""The stores and the dev upstream on free ports in one folder, for benchmarks and scripts,
and the environment contract that points the platform's code at them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_platform import settings
from data_platform.resources import PostgresResource

from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.postgres import SUPERUSER, LocalPostgres
from data_platform_dev.stack.processes import free_port
from data_platform_dev.stack.redis import LocalRedis


def platform_environment(
    postgres_port: int,
    postgres_password: str,
    redis_port: int | None = None,
    redis_password: str = "",
    journal_api_url: str | None = None,
) -> dict[str, str]:
    """The variables of the environment contract (settings.py) for servers on this machine."""
    env = {
        settings.POSTGRES_HOST: "127.0.0.1",
        settings.POSTGRES_PORT: str(postgres_port),
        settings.POSTGRES_USER: SUPERUSER,
        settings.POSTGRES_PASSWORD: postgres_password,
        settings.WAREHOUSE_DB: "warehouse",
        settings.FEAST_REGISTRY_DB: "feast_registry",
    }
    if redis_port is not None:
        env |= {
            settings.REDIS_HOST: "127.0.0.1",
            settings.REDIS_PORT: str(redis_port),
            settings.REDIS_PASSWORD: redis_password,
        }
    if journal_api_url is not None:
        env[settings.JOURNAL_API_URL] = journal_api_url
    return env


@dataclass
class LocalServers:
    state: Path
    postgres: LocalPostgres
    redis: LocalRedis | None
    journal_api: JournalApiProcess | None

    def environment(self) -> dict[str, str]:
        return platform_environment(
            self.postgres.port,
            self.postgres.password,
            self.redis.port if self.redis else None,
            self.redis.password if self.redis else "",
            self.journal_api.url if self.journal_api else None,
        )

    def warehouse(self) -> PostgresResource:
        return PostgresResource(
            host="127.0.0.1",
            port=self.postgres.port,
            user=SUPERUSER,
            password=self.postgres.password,
            database="warehouse",
            sslmode="disable",
        )


@contextmanager
def local_servers(
    state: Path, *, redis: bool = False, upstream: dict[str, Any] | None = None
) -> Iterator[LocalServers]:
    """Start Postgres (and Redis, and the dev upstream with these options); stop them after."""
    with ExitStack() as stack:
        postgres = LocalPostgres(
            state / "postgres", free_port(), secrets.token_hex(12), state / "postgres.log"
        ).start()
        stack.callback(postgres.stop)
        online = None
        if redis:
            online = LocalRedis(
                state / "redis", free_port(), secrets.token_hex(12), state / "redis.log"
            ).start()
            stack.callback(online.stop)
        api = None
        if upstream is not None:
            api = JournalApiProcess(free_port(), state / "journal-api.log", upstream).start()
            stack.callback(api.stop)
        yield LocalServers(state, postgres, online, api)
