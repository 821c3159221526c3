"""Benchmark: ingest 1,000,000 journal entries from the dev upstream; compare with plain COPY.

Not a test: it prints figures. The baseline is measured in the same run, on the same database:
the same rows, already in binary COPY format in memory, copied into a table shaped like
raw.journal_entries (primary key included). The ratio says how much of COPY's speed the whole
ingestion path keeps (HTTP, JSON validation, COPY into a temporary table, upsert, cursor).

    python -m tests.benchmarks.bench_ingest [--entries 1000000] [--users 10000]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import dagster as dg
import psycopg
from data_platform.local.servers import LocalServers, local_servers
from ingestion.assets.ingestion.journal_app import journal_app
from ingestion.records import JournalEntry
from ingestion.resources.journal_api import JournalApiResource

COLUMNS = "id, created_at, updated_at, user_id, game_type_id, duration_minutes, score, mood"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=10_000)
    args = parser.parse_args()

    upstream = {"users": args.users, "entries": args.entries, "end": "2026-06-30"}
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        local_servers(Path(tmp), upstream=upstream) as servers,
    ):
        run(servers, args)


def run(servers: LocalServers, args: argparse.Namespace) -> None:
    warehouse, api = servers.warehouse(), servers.journal_api
    assert api is not None
    client = JournalApiResource(base_url=api.url, page_size=args.page_size)
    # One untimed read renders the upstream's pages into its cache: in production the upstream
    # is another machine, and its JSON rendering must not be charged to our ingestion here.
    started = time.perf_counter()
    warm = sum(len(page) for page in client.fetch(JournalEntry))
    print(
        f"upstream warm-up read        : {warm:,} rows in {time.perf_counter() - started:.2f} s (untimed)"
    )

    started = time.perf_counter()
    result = dg.materialize(
        [journal_app],
        selection=["journal_entries"],
        resources={"postgres": warehouse, "journal_api": client},
    )
    run_seconds = time.perf_counter() - started
    assert result.success
    step = next(e for e in result.all_events if e.is_step_success)
    ingest_seconds = step.event_specific_data.duration_ms / 1000
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    loaded = metadata["inserted"].value
    assert loaded == args.entries, f"expected {args.entries} rows, loaded {loaded}"

    with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:
        buffer = io.BytesIO()
        with conn.cursor().copy(
            f"COPY (SELECT {COLUMNS} FROM raw.journal_entries) TO STDOUT (FORMAT BINARY)"
        ) as copy:
            for chunk in copy:
                buffer.write(chunk)
        conn.execute("CREATE TABLE copy_baseline (LIKE raw.journal_entries INCLUDING ALL)")
        data = buffer.getvalue()
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(
                f"COPY copy_baseline ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            for offset in range(0, len(data), 1 << 20):
                copy.write(data[offset : offset + (1 << 20)])
        copy_seconds = time.perf_counter() - started
        (copied,) = conn.execute("SELECT count(*) FROM copy_baseline").fetchone() or (0,)
    assert copied == loaded

    ingest_rate = loaded / ingest_seconds
    copy_rate = copied / copy_seconds
    print(
        f"journal entries ingested     : {loaded:,} rows in {ingest_seconds:.2f} s = {ingest_rate:,.0f} rows/s"
    )
    print(
        f"  (the asset's step: HTTP pages of {args.page_size:,}, validation, COPY, upsert, cursor;"
    )
    print(f"   the whole in-process Dagster run around it took {run_seconds:.2f} s)")
    print(
        f"plain COPY of the same rows  : {copied:,} rows in {copy_seconds:.2f} s = {copy_rate:,.0f} rows/s"
    )
    print(f"ratio ingest / COPY          : {ingest_rate / copy_rate:.2f}  (goal >= 0.50)")


if __name__ == "__main__":
    main()
