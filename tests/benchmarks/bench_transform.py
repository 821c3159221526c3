"""Benchmark: dbt build of the warehouse over N journal entries (1,000,000 by default) and
10,000 users, then an incremental build after 1% new entries.

Not a test: it prints figures and ends with one JSON line (`entries`, `full_s`,
`incremental_s`, `ratio`, `incremental_same_day_s`, `same_day_ratio`). Raw data is loaded by
the ingestion location's own assets from the dev upstream (untimed). Each build is what the dbt_analytics asset runs, in a fresh process as
a run worker would: the location is imported and dbt's runner and manifest loaded first
(untimed: the run's start-up, and what the asset loads before it takes the build lock), then
the build is timed from taking the build lock to dbt's last event (every model and test).
The manifest and its compiled templates are prepared first, as `make dbt-manifest` and the
image build prepare them (dbt_templates.py).
Full = the first build over the loaded data, every row tested; incremental = the next build
after +1% (the database vacuumed and analyzed first, untimed, as autovacuum would between
hourly builds), testing the rows it wrote. The upstream's entries end at midnight, so that
build is the day's first (it rewrites yesterday's row and today's); a second +1% gives the
next build, within the day (`incremental_same_day_s`, today's row only).

    python -m tests.benchmarks.bench_transform [--entries 1000000[,10000000 ...]] [--users 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import dagster as dg
import psycopg
from data_platform.resources import PostgresResource
from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.servers import LocalServers
from ingestion.defs.assets.ingestion.journal_app import journal_app
from ingestion.journal_api import JournalApiResource
from transformation.dbt_resource import dbt_files
from transformation.dbt_templates import compile_templates
from transformation.manifest import ensure_manifest

from tests.benchmarks.sizes import entry_sizes, fresh_stacks

MODELS = (
    "stg_journal_entries",
    "user_journal_features",
    "game_type_stats",
    "user_journal_features_history",
    "game_type_stats_history",
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--entries",
        type=entry_sizes,
        default=[1_000_000],
        help="journal entries; several sizes separated by commas give a growth curve",
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument(
        "--new-share", type=float, default=0.01, help="new entries, incremental run"
    )
    parser.add_argument("--one-build", metavar="AS_OF", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_build:
        one_build(datetime.fromisoformat(args.one_build))
        return

    curve = []
    for entries, servers in fresh_stacks(args.entries, args.users, "bench-transform-"):
        curve.append(run(servers, args, entries))
    if len(curve) > 1:
        print("growth (entries: full s, incremental s, ratio):")
        for point in curve:
            print(
                f"  {point['entries']:>12,}: {point['full_s']:7.2f} {point['incremental_s']:7.2f}"
                f" {point['ratio']:6.3f}"
            )
        print(json.dumps({**curve[-1], "curve": curve}))


def one_build(as_of: datetime) -> None:
    """One build as the run worker does it; prints its wall time and each node's seconds."""
    # the run's start-up, untimed: the location's modules (the asset loads the manifest)
    from transformation.build_lock import dbt_build_lock
    from transformation.dbt_config import dbt_cli
    from transformation.defs.assets.transformations import dbt_assets  # noqa: F401
    from transformation.translator import warehouse_translator

    env = os.environ
    warehouse = PostgresResource(
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        database=env["WAREHOUSE_DB"],
        sslmode="disable",
    )
    cli = dbt_cli()
    cli.prepare(warehouse.database)  # as the asset does, before its lock
    started = time.perf_counter()
    with dbt_build_lock(warehouse) as locked_at:
        events = list(
            cli.run_in_process(
                cli.build_args(warehouse, as_of=as_of, changed_since=locked_at),
                database=warehouse.database,
                dagster_dbt_translator=warehouse_translator(),
            )
        )
    seconds = time.perf_counter() - started
    nodes = {}
    for event in events:
        metadata = getattr(event, "metadata", None) or {}
        if "unique_id" in metadata:
            duration = metadata.get("Execution Duration")
            nodes[metadata["unique_id"].value] = getattr(duration, "value", duration) or 0.0
    print(json.dumps({"seconds": seconds, "nodes": nodes}))


def ingest(warehouse: PostgresResource, api: JournalApiProcess) -> float:
    started = time.perf_counter()
    client = JournalApiResource(base_url=api.url, page_size=50_000)
    dg.materialize(
        [journal_app],
        resources={"postgres": warehouse, "journal_api": client},
    )
    return time.perf_counter() - started


def dbt_build(as_of: datetime) -> tuple[float, dict[str, float]]:
    """Wall time of one build in a fresh process as of ``as_of``, and each node's seconds.

    The build is as of the newest entry (the upstream's data ends in the past): as of today,
    every user would also get a row for each day since, which is not what is measured here.
    """
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.bench_transform",
            "--one-build",
            as_of.isoformat(),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"dbt build failed:\n{(completed.stdout + completed.stderr)[-5000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return result["seconds"], result["nodes"]


def settle(warehouse: PostgresResource) -> None:
    """VACUUM ANALYZE (untimed): what autovacuum does between hourly builds. Without it the
    incremental build runs beside autovacuum's first pass over the tables just written."""
    with warehouse.connect(autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def newest_entry(warehouse: PostgresResource) -> datetime:
    with psycopg.connect(warehouse.conninfo()) as conn:
        (newest,) = conn.execute("SELECT max(created_at) FROM raw.journal_entries").fetchone() or (
            None,
        )
    assert newest is not None, "no journal entries were loaded"
    return newest  # type: ignore[no-any-return]


def report(label: str, seconds: float, rows: int, nodes: dict[str, float]) -> None:
    by_name = {unique_id.split(".")[-1]: s for unique_id, s in nodes.items()}
    tests = [s for unique_id, s in nodes.items() if unique_id.startswith("test.")]
    rate = f" = {rows / seconds:,.0f} journal entries/s" if label.startswith("full") else ""
    print(f"{label:<28}: {seconds:6.2f} s wall for {rows:,} entries{rate}")
    for model in MODELS:
        print(f"  {model:<26}: {by_name.get(model, 0.0):6.2f} s")
    print(f"  {len(tests)} tests                  : {sum(tests):6.2f} s (summed)")
    slowest = sorted(
        ((s, uid) for uid, s in nodes.items() if uid.startswith("test.")), reverse=True
    )[:8]
    for s, uid in slowest:
        print(f"    {s:6.2f} s  {uid.split('.')[2][:70]}")


def run(servers: LocalServers, args: argparse.Namespace, size: int) -> dict[str, Any]:
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
    print(f"load average                : {os.getloadavg()[0]:.2f} (2 cores shared)")

    # as `make dbt-manifest` and the image build do, untimed: the manifest and its templates
    compile_templates(ensure_manifest(dbt_files))
    as_of = newest_entry(warehouse)
    full_s, nodes = dbt_build(as_of)
    report(f"full dbt build (as of {as_of:%Y-%m-%d %H:%M})", full_s, entries, nodes)

    new_entries = int(size * args.new_share)
    incremental = []
    for _ in range(2):
        api.advance(new_entries=new_entries)
        seconds = ingest(warehouse, api)
        settle(warehouse)
        print(f"ingested {new_entries:,} new entries (untimed) in {seconds:.1f} s")
        day_before, as_of = as_of, newest_entry(warehouse)
        build_s, nodes = dbt_build(as_of)
        day = "same day" if as_of.date() == day_before.date() else "a new day"
        label = f"incremental (+{args.new_share:.0%}, as of {as_of:%Y-%m-%d %H:%M}, {day})"
        report(label, build_s, new_entries, nodes)
        incremental.append(build_s)
    incremental_s, same_day_s = incremental

    with psycopg.connect(warehouse.conninfo()) as conn:
        for table in (f"gold.{model}" for model in MODELS[1:]):
            (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
            print(f"{table:<28}: {count:,} rows")
    print(f"load average                : {os.getloadavg()[0]:.2f} (2 cores shared)")
    result: dict[str, Any] = {
        "entries": entries,
        "users": users,
        "new_entries": new_entries,
        "full_s": round(full_s, 2),
        "incremental_s": round(incremental_s, 2),
        "ratio": round(incremental_s / full_s, 3),
        "incremental_same_day_s": round(same_day_s, 2),
        "same_day_ratio": round(same_day_s / full_s, 3),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
