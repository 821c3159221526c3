"""Benchmark: dbt build of the warehouse over 1,000,000 journal entries and 10,000 users, then
an incremental build after 1% new entries.

Not a test: it prints figures. Raw data is loaded by the ingestion location's own assets from
the dev upstream (untimed); each build is the `dbt build` the dbt_analytics asset runs (every
model and every test), timed from the command's start to its end, dbt's start-up included.

    python -m tests.benchmarks.bench_transform [--entries 1000000] [--users 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from data_platform.resources import PostgresResource
from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.servers import LocalServers, local_servers
from ingestion.defs.assets.ingestion.journal_app import journal_app
from ingestion.journal_api import JournalApiResource

MODELS = (
    "stg_journal_entries",
    "user_journal_features",
    "game_type_stats",
    "user_journal_features_history",
    "game_type_stats_history",
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument(
        "--new-share", type=float, default=0.01, help="new entries, incremental run"
    )
    args = parser.parse_args()

    upstream = {"users": args.users, "entries": args.entries, "end": "2026-06-30"}
    with (
        tempfile.TemporaryDirectory(prefix="bench-transform-") as tmp,
        local_servers(Path(tmp), upstream=upstream) as servers,
    ):
        run(servers, args)


def ingest(warehouse: PostgresResource, api: JournalApiProcess) -> float:
    started = time.perf_counter()
    client = JournalApiResource(base_url=api.url, page_size=50_000)
    dg.materialize(
        [journal_app],
        resources={"postgres": warehouse, "journal_api": client},
    )
    return time.perf_counter() - started


def dbt_build(as_of: datetime) -> tuple[float, dict[str, Any]]:
    """Wall time of `dbt build` as of ``as_of``, and dbt's run results.

    The build is as of the newest entry (the upstream's data ends in the past): as of today,
    every user would also get a row for each day since, which is not what is measured here.
    """
    from transformation.dbt_config import dbt_cli, dbt_project
    from transformation.manifest import ensure_manifest

    started = time.perf_counter()
    invocation = dbt_cli().cli(
        ["build", "--vars", json.dumps({"as_of": as_of.isoformat()})],
        manifest=ensure_manifest(dbt_project),
    )
    invocation.wait()
    return time.perf_counter() - started, invocation.get_artifact("run_results.json")


def newest_entry(warehouse: PostgresResource) -> datetime:
    with psycopg.connect(warehouse.conninfo()) as conn:
        (newest,) = conn.execute("SELECT max(created_at) FROM raw.journal_entries").fetchone() or (
            None,
        )
    assert newest is not None, "no journal entries were loaded"
    return newest  # type: ignore[no-any-return]


def report(label: str, seconds: float, rows: int, results: dict[str, Any]) -> None:
    by_name = {r["unique_id"].split(".")[-1]: r for r in results["results"]}
    tests = [r for r in results["results"] if r["unique_id"].startswith("test.")]
    failed = [r["unique_id"] for r in results["results"] if r["status"] not in ("success", "pass")]
    assert not failed, f"dbt build failed: {failed}"
    rate = f" = {rows / seconds:,.0f} journal entries/s" if label.startswith("full") else ""
    print(f"{label:<28}: {seconds:6.2f} s wall for {rows:,} entries{rate}")
    for model in MODELS:
        result = by_name[model]
        print(
            f"  {model:<26}: {result['execution_time']:6.2f} s  {result['adapter_response'].get('_message', '')}"
        )
    print(
        f"  {len(tests)} tests                  : {sum(t['execution_time'] for t in tests):6.2f} s (summed)"
    )


def run(servers: LocalServers, args: argparse.Namespace) -> None:
    warehouse, api = servers.warehouse(), servers.journal_api
    assert api is not None
    os.environ.update(
        servers.environment(),
        DBT_TARGET="local",
        DBT_TARGET_PATH=str(servers.state / "dbt-target"),
    )
    seconds = ingest(warehouse, api)
    with psycopg.connect(warehouse.conninfo()) as conn:
        (entries,) = conn.execute("SELECT count(*) FROM raw.journal_entries").fetchone() or (0,)
        (users,) = conn.execute("SELECT count(*) FROM raw.users").fetchone() or (0,)
    print(f"raw data loaded (untimed)   : {entries:,} entries, {users:,} users in {seconds:.1f} s")

    seconds, results = dbt_build(newest_entry(warehouse))
    report("full dbt build", seconds, entries, results)

    new_entries = int(args.entries * args.new_share)
    api.advance(new_entries=new_entries)
    seconds = ingest(warehouse, api)
    print(f"ingested {new_entries:,} new entries (untimed) in {seconds:.1f} s")
    seconds, results = dbt_build(newest_entry(warehouse))
    report(f"incremental (+{args.new_share:.0%} entries)", seconds, new_entries, results)

    with psycopg.connect(warehouse.conninfo()) as conn:
        for table in (f"gold.{model}" for model in MODELS[1:]):
            (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
            print(f"{table:<28}: {count:,} rows")


if __name__ == "__main__":
    main()
