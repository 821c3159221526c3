"""Loads beside other loads and readers: short locks, no DDL per run, exact results."""

from concurrent.futures import ThreadPoolExecutor

import psycopg
from data_platform_dev.timed_reader import TimedReader
from ingestion.raw_tables import schema_version


def test_two_runs_at_once_and_a_reader(
    start_journal_api, ingest, warehouse, metadata, assert_raw_is_upstream
):
    api = start_journal_api(users=200, entries=60_000)
    query = "SELECT count(*), max(updated_at) FROM raw.journal_entries"
    with TimedReader(warehouse.conninfo(), query) as reader, ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: ingest(api, page_size=5_000), range(2)))
    assert all(run.success for run in runs)
    assert_raw_is_upstream(api)  # exact: every row once, no duplicate, no loss
    merges = [metadata(run, "journal_entries") for run in runs]
    # one run merged, the other waited its turn and found every row already there
    assert sum(m["inserted"] for m in merges) == 60_000
    longest_merge = max(m["merge_seconds"] for m in merges)
    print(
        f"reader: {reader.reads} reads, longest {reader.longest:.3f} s; "
        f"merges {[m['merge_seconds'] for m in merges]} s, "
        f"lock waits {[m['merge_lock_wait_seconds'] for m in merges]} s"
    )
    assert reader.reads > 0
    assert reader.longest <= longest_merge + 0.5  # never blocked longer than a merge


def test_a_long_reader_does_not_stop_loads(start_journal_api, ingest, warehouse, raw_counts):
    """A load runs no DDL: a reader holding raw in an open transaction (a dbt build, a Feast
    materialization) does not make it queue, nor anyone behind it."""
    api = start_journal_api(users=20, entries=1_000)
    assert ingest(api).success
    api.advance(new_entries=100, changed_entries=10, new_users=2)
    with psycopg.connect(warehouse.conninfo()) as reader:
        reader.execute("SELECT count(*) FROM raw.journal_entries, raw.users")  # holds both
        with ThreadPoolExecutor(1) as pool:
            load = pool.submit(ingest, api, config={"merge_lock_timeout_seconds": 5})
            result = load.result(timeout=120)
        assert reader.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert result.success
    assert raw_counts()["raw.journal_entries"] == 1_100
    with psycopg.connect(warehouse.conninfo()) as conn:
        versions = conn.execute("SELECT version FROM raw.schema_migrations").fetchall()
    assert versions == [(schema_version(),)]  # migrated once, by the first load
