"""PostgresResource: connections to the warehouse, and a COPY-based bulk load.

psycopg is imported where a connection is made: every code server and run loads the
resource, and the import costs about 0.3 s before the first step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


class PostgresResource(dg.ConfigurableResource):
    """A Postgres database reached over TCP with a password (psycopg 3)."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "platform"
    password: str = Field(default="", description="from a Kubernetes Secret or the local stack")
    database: str = "warehouse"
    sslmode: str = "prefer"
    application_name: str = "data-platform"
    connect_timeout_seconds: int = 10
    # TCP keepalives: a peer lost with its node (a run pod, the database) is noticed within
    # about idle + interval * count seconds, not when the kernel gives up hours later; a
    # session that held a lock then ends, and its transaction rolls back
    keepalives_idle_seconds: int = 30
    keepalives_interval_seconds: int = 10
    keepalives_count: int = 3
    lock_timeout_seconds: float | None = Field(
        default=None, description="every statement on these connections: wait this long for a lock"
    )
    statement_timeout_seconds: float | None = Field(
        default=None, description="every statement on these connections: run at most this long"
    )

    def conninfo(self, database: str | None = None) -> str:
        settings = [
            f"-c {name}={int(seconds * 1000)}"
            for name, seconds in (
                ("lock_timeout", self.lock_timeout_seconds),
                ("statement_timeout", self.statement_timeout_seconds),
            )
            if seconds is not None
        ]
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            sslmode=self.sslmode,
            application_name=self.application_name,
            connect_timeout=self.connect_timeout_seconds,
            keepalives=1,
            keepalives_idle=self.keepalives_idle_seconds,
            keepalives_interval=self.keepalives_interval_seconds,
            keepalives_count=self.keepalives_count,
            **({"options": " ".join(settings)} if settings else {}),
        )

    def sqlalchemy_url(self, driver: str = "psycopg", database: str | None = None) -> str:
        """The same database as a SQLAlchemy URL (Feast's SQL registry takes one)."""
        from urllib.parse import quote

        return (
            f"postgresql+{driver}://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{database or self.database}?sslmode={self.sslmode}"
        )

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A connection that commits on success and rolls back on any error."""
        import psycopg

        try:
            conn = psycopg.connect(self.conninfo(), autocommit=autocommit)
        except psycopg.OperationalError as error:
            raise ConnectionError(
                f"cannot connect to Postgres at {self.host}:{self.port} database "
                f"{self.database!r} as {self.user!r}: {error}".strip()
            ) from error
        with conn:
            yield conn


def copy_into(
    cursor: psycopg.Cursor[Any],
    table: str | sql.Composable,
    columns: Sequence[str],
    queued: bool = False,
) -> AbstractContextManager[psycopg.Copy]:
    """``COPY table (columns) FROM STDIN`` in text format on an open cursor: write rows with
    ``write_row`` or whole blocks of COPY text with ``write``. Nothing is visible to others
    until the caller's transaction commits, and a rollback leaves no row behind.

    ``queued``: the data is sent from a thread of its own, so the caller prepares the next
    block while Postgres takes the last one (for long streams of large blocks)."""
    from psycopg import sql
    from psycopg.copy import QueuedLibpqWriter

    target = sql.Identifier(*table.split(".")) if isinstance(table, str) else table
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        target, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    if queued:
        return cursor.copy(statement, writer=QueuedLibpqWriter(cursor))
    return cursor.copy(statement)
