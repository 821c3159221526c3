"""Benchmark: ingest 1,000,000 journal entries from the dev upstream; compare with plain COPY.

Not a test: it prints figures. The baselines are measured in the same run, on the same
database: the same rows, already in memory in COPY's binary and text formats, copied into a
table shaped like raw.journal_entries (primary key included). The ratios say how much of
COPY's speed the whole ingestion path keeps (HTTP, JSON validation, COPY into a staging
table, the merge into raw, cursor); binary COPY, which skips parsing timestamps, is the
stricter of the two. A reader queries raw.journal_entries in a loop during the load; its
longest wait is reported. The last line of the output is JSON with every figure.

On a shared machine one measurement says more about the neighbours than about the load:
the load and both baselines run ``--repeats`` times, one after the other (into emptied
tables), and each figure is the median; ``ratio_to_binary_copy`` is the median of the
attempts' own ratios.

    python -m tests.benchmarks.bench_ingest [--entries 1000000] [--users 10000] [--repeats 3]

``--entries`` takes one size or several (``--entries 100000,1000000``: a growth curve, each
size on a fresh upstream and database; the last line then also holds ``curve``, one entry per
size, and the smallest ratio as ``ratio_to_binary_copy``).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from typing import Any

import dagster as dg
import psycopg
from data_platform_dev.stack.servers import LocalServers
from data_platform_dev.timed_reader import TimedReader
from ingestion.defs.assets.ingestion.journal_app import journal_app
from ingestion.journal_api import JournalApiResource
from ingestion.raw_tables import migrate
from ingestion.records import JournalEntry

from tests.benchmarks.sizes import entry_sizes, fresh_stacks

COLUMNS = "id, created_at, updated_at, user_id, game_type_id, duration_minutes, score, mood"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--entries",
        type=entry_sizes,
        default=[1_000_000],
        help="rows to ingest; several sizes separated by commas give a growth curve",
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    curve = []
    for entries, servers in fresh_stacks(args.entries, args.users, "bench-ingest-"):
        curve.append(run(servers, args, entries))
    if len(curve) > 1:
        keys = (
            "rows",
            "ingest_seconds",
            "rows_per_second",
            "ratio_to_binary_copy",
            "reader_longest_wait_seconds",
        )
        print("growth: " + "; ".join(f"{c['rows']:,} rows {c['ingest_seconds']} s" for c in curve))
        print(
            json.dumps(
                {
                    "curve": [{k: c[k] for k in keys} for c in curve],
                    "ratio_to_binary_copy": min(c["ratio_to_binary_copy"] for c in curve),
                }
            )
        )


def run(servers: LocalServers, args: argparse.Namespace, entries: int) -> dict[str, Any]:
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

    with warehouse.connect(autocommit=True) as conn:
        migrate(conn)  # the deploy step: the reader has a table to read from the start
    # what dbt or Feast do meanwhile: read raw.journal_entries, timing each read
    query = "SELECT max(id) FROM raw.journal_entries"
    loads: list[float] = []
    copies: dict[str, list[float]] = {"binary": [], "text": []}
    ratios: list[float] = []  # per attempt: the load and its baselines share their neighbours
    reads, longest_read = 0, 0.0  # over every attempt: the reader's worst wait is the guarantee
    for attempt in range(1, args.repeats + 1):
        with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:
            conn.execute("TRUNCATE raw.journal_entries")
            conn.execute("DELETE FROM raw.ingestion_cursors WHERE endpoint = 'journal_entries'")
        started = time.perf_counter()
        with TimedReader(warehouse.conninfo(), query, pause_seconds=0.05) as reader:
            result = dg.materialize(
                [journal_app],
                selection=["journal_entries"],
                resources={"postgres": warehouse, "journal_api": client},
            )
        run_seconds = time.perf_counter() - started
        assert result.success
        step = next(e for e in result.all_events if e.is_step_success)
        loads.append(step.event_specific_data.duration_ms / 1000)
        reads, longest_read = reads + reader.reads, max(longest_read, reader.longest)
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        loaded = metadata["inserted"].value
        assert loaded == entries, f"expected {entries} rows, loaded {loaded}"
        with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:
            for fmt in copies:
                copies[fmt].append(plain_copy(conn, fmt, loaded))
        ratios.append(copies["binary"][-1] / loads[-1])
        print(
            f"attempt {attempt}/{args.repeats}: load {loads[-1]:.2f} s, binary COPY "
            f"{copies['binary'][-1]:.2f} s, text COPY {copies['text'][-1]:.2f} s "
            f"-> ratio {ratios[-1]:.2f}"
        )
    ingest_seconds = statistics.median(loads)
    baselines = {fmt: statistics.median(times) for fmt, times in copies.items()}
    merge_seconds = metadata["merge_seconds"].value
    ingest_rate = loaded / ingest_seconds
    print(
        f"journal entries ingested     : {loaded:,} rows in {ingest_seconds:.2f} s = {ingest_rate:,.0f} rows/s"
    )
    print(
        f"  (the asset's step, median of {args.repeats}: HTTP pages of {args.page_size:,}, validation,"
    )
    print(
        f"   COPY of new ids into raw ({metadata.get('appended', dg.MetadataValue.int(0)).value:,} rows), the rest staged,"
    )
    print(f"   then the merge, which held raw against writers for {merge_seconds:.2f} s;")
    print(f"   the whole in-process Dagster run around it took {run_seconds:.2f} s)")
    for fmt, seconds in baselines.items():
        rate = loaded / seconds
        print(
            f"plain COPY, {fmt + ' format':<14}   : {loaded:,} rows in {seconds:.2f} s = {rate:,.0f} rows/s"
            f"  -> ratio ingest / COPY {ingest_rate / rate:.2f}"
        )
    print("goal: ratio >= 0.50 (binary COPY is the stricter baseline)")
    print(
        f"parallel reader of raw       : {reads:,} reads during the load, "
        f"longest {longest_read:.3f} s"
    )
    figures = {
        "rows": loaded,
        "ingest_seconds": round(ingest_seconds, 3),
        "rows_per_second": round(ingest_rate),
        "merge_seconds": merge_seconds,
        "binary_copy_seconds": round(baselines["binary"], 3),
        "text_copy_seconds": round(baselines["text"], 3),
        "ratio_to_binary_copy": round(statistics.median(ratios), 3),
        "ratio_to_text_copy": round(baselines["text"] / ingest_seconds, 3),
        "merge_ratio_to_binary_copy": round(baselines["binary"] / merge_seconds, 3),
        "reader_reads": reads,
        "reader_longest_wait_seconds": round(longest_read, 3),
    }
    print(json.dumps(figures))
    return figures


def plain_copy(conn: psycopg.Connection, fmt: str, expected: int) -> float:
    """Seconds to COPY the loaded rows, already in memory in ``fmt``, into a fresh table
    shaped like raw.journal_entries (primary key included)."""
    buffer = io.BytesIO()
    with conn.cursor().copy(
        f"COPY (SELECT {COLUMNS} FROM raw.journal_entries) TO STDOUT (FORMAT {fmt})"
    ) as copy:
        for chunk in copy:
            buffer.write(chunk)
    table = f"copy_baseline_{fmt}"
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (LIKE raw.journal_entries INCLUDING ALL)")
    data = buffer.getvalue()
    started = time.perf_counter()
    with (
        conn.transaction(),
        conn.cursor().copy(f"COPY {table} ({COLUMNS}) FROM STDIN (FORMAT {fmt})") as copy,
    ):
        for offset in range(0, len(data), 1 << 20):
            copy.write(data[offset : offset + (1 << 20)])
    seconds = time.perf_counter() - started
    (copied,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
    assert copied == expected, f"{table} has {copied} rows, expected {expected}"
    return seconds


if __name__ == "__main__":
    main()
