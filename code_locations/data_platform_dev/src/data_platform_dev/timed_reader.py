"""A reader that queries a table in a loop beside a load and keeps its longest wait.

What dbt or Feast do while ingestion runs: the tests and the ingest benchmark use it to show
how long a load can hold up a reader of raw.
"""

from __future__ import annotations

import threading
import time

import psycopg


class TimedReader:
    """Runs ``query`` in a loop on its own connection until stopped (a context manager)."""

    def __init__(self, conninfo: str, query: str, pause_seconds: float = 0.0) -> None:
        self.conninfo, self.query, self.pause = conninfo, query, pause_seconds
        self.stop = threading.Event()
        self.longest = 0.0
        self.reads = 0
        self.thread = threading.Thread(target=self.run, daemon=True, name="timed-reader")

    def run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self.stop.wait(self.pause):
                started = time.perf_counter()
                try:
                    conn.execute(self.query)
                except psycopg.errors.UndefinedTable:
                    continue  # not created yet: the first load creates it
                self.longest = max(self.longest, time.perf_counter() - started)
                self.reads += 1

    def __enter__(self) -> TimedReader:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
