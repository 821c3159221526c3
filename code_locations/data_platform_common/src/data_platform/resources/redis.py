"""RedisResource: direct access to the online store, for verification and debugging."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    import redis


class RedisResource(dg.ConfigurableResource):
    host: str = "127.0.0.1"
    port: int = 6379
    password: str = Field(default="", description="from a Kubernetes Secret or the local stack")
    db: int = 0
    socket_timeout_seconds: float = 5.0
    client_name: str = Field(default="", description="shown by CLIENT LIST, like application_name")

    def client(self) -> redis.Redis:
        import redis  # where used: every code server loads this resource

        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password or None,
            db=self.db,
            socket_timeout=self.socket_timeout_seconds,
            socket_connect_timeout=self.socket_timeout_seconds,
            client_name=self.client_name or None,
        )

    def ping(self) -> bool:
        import redis

        try:
            return bool(self.client().ping())
        except redis.RedisError as error:
            raise ConnectionError(
                f"cannot reach Redis at {self.host}:{self.port}: {error}"
            ) from error

    def feast_connection_string(self) -> str:
        """Feast's Redis syntax: ``host:port,password=...,db=N`` (not a redis:// URL)."""
        parts = [f"{self.host}:{self.port}"]
        if self.password:
            parts.append(f"password={self.password}")
        parts.append(f"db={self.db}")
        return ",".join(parts)
