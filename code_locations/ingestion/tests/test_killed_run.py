"""A run killed with SIGKILL in the middle of its COPY leaves raw, and its cursor, as they were."""

import json
import os
import signal
import subprocess
import sys
import time

import psycopg

LOAD = """
import json, sys
from data_platform.resources import PostgresResource
from ingestion.journal_api import JournalApiResource
from ingestion.loads import ingest_endpoint
from ingestion.records import JournalEntry
settings = json.loads(sys.argv[1])
ingest_endpoint(
    PostgresResource(**settings["postgres"]),
    JournalApiResource(base_url=settings["url"], page_size=100),
    JournalEntry,
)
"""


def sessions(warehouse, application: str) -> list[tuple]:
    with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:
        return conn.execute(
            "SELECT state, query FROM pg_stat_activity WHERE application_name = %s",
            [application],
        ).fetchall()


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_kill_9_mid_copy_rolls_back_cleanly(
    start_journal_api, ingest, warehouse, raw_snapshot, assert_raw_is_upstream
):
    api = start_journal_api(users=20, entries=2_000)
    assert ingest(api).success
    before = raw_snapshot()
    api.advance(new_entries=3_000, changed_entries=50)
    api.set_faults(latency_ms=100)  # 30 pages of 100: the COPY stays open for seconds

    application = "killed-run"
    settings = {
        "postgres": {**warehouse.model_dump(), "application_name": application},
        "url": api.url,
    }
    run = subprocess.Popen([sys.executable, "-c", LOAD, json.dumps(settings)])
    try:
        wait_for(lambda: any(q.startswith("COPY") for _, q in sessions(warehouse, application)))
        time.sleep(0.5)  # some pages are in
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
    finally:
        run.kill()
    wait_for(lambda: sessions(warehouse, application) == [])  # no session left, none idle in
    assert raw_snapshot() == before  # rows and cursor untouched

    api.set_faults()
    assert ingest(api).success  # the relaunch loads exactly what is upstream
    assert_raw_is_upstream(api)
