"""Advisory locks on the Feast registry database, so registry writers take turns.

Feast's SQL registry has no locking of its own: two processes creating its tables at once
collide, and an apply racing a materialization can overwrite the other's feature view row.
A Postgres advisory lock on the registry database serializes every writer that asks for it,
whatever process or pod it runs in, and is released when its connection ends.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url


def _lock_id(name: str) -> int:
    """A stable 32-bit key for a lock name (advisory locks are keyed by integers)."""
    return zlib.crc32(f"feast-registry:{name}".encode())


def registry_conninfo(registry_url: str) -> str:
    """psycopg connection info for the SQLAlchemy URL of the registry."""
    url = make_url(registry_url)
    return psycopg.conninfo.make_conninfo(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "",
        password=url.password or "",
        dbname=url.database or "",
        sslmode=str(url.query.get("sslmode", "prefer")),
        application_name="feast-registry-lock",
        connect_timeout=10,
    )


@contextmanager
def registry_lock(
    registry_url: str,
    name: str,
    on_wait: Callable[[str], None] = lambda message: None,
) -> Iterator[None]:
    """Hold the named lock for the block; waits (and says so) while another holder has it."""
    key = _lock_id(name)
    with psycopg.connect(registry_conninfo(registry_url), autocommit=True) as conn:
        (acquired,) = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone() or (False,)
        if not acquired:
            started = time.monotonic()
            on_wait(
                f"waiting for the Feast registry lock {name!r}: another apply or "
                "materialization is running"
            )
            conn.execute("SELECT pg_advisory_lock(%s)", [key])
            on_wait(
                f"got the Feast registry lock {name!r} after {time.monotonic() - started:.1f} s"
            )
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [key])
