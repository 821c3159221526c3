"""One dbt build at a time per warehouse: a Postgres advisory lock held around `dbt build`.

Incremental gold reads the change log up to its previous build's time; a second build running
alongside could stamp its rows after a change it never saw, and that change would be skipped
forever. Waiting for the lock makes overlapping runs (automation, a manual catch-up, a retry)
build one after the other, each from the state the previous one left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from data_platform.resources import PostgresResource

# pg_advisory_lock(bigint) key: the ASCII of "dbtbuild"
BUILD_LOCK_KEY = 0x6462746275696C64


@contextmanager
def dbt_build_lock(
    postgres: PostgresResource, on_wait: Callable[[str], None] = lambda message: None
) -> Iterator[datetime]:
    """Hold the warehouse's build lock (session level: a crashed run's lock goes with it).

    Yields the warehouse's clock once the lock is held: every row the build writes is stamped
    at or after it (the rows its tests read, changed_rows.sql).
    """
    with postgres.connect(autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [BUILD_LOCK_KEY]).fetchone()
        if not (row and row[0]):
            on_wait("another dbt build holds the warehouse's build lock: waiting for it")
            conn.execute("SELECT pg_advisory_lock(%s)", [BUILD_LOCK_KEY])
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        locked_at: datetime = row[0]
        yield locked_at  # closing the connection releases the lock
