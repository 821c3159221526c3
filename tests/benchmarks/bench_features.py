"""Benchmark: materialize gold into Redis (full, then incremental), then read it back.

Not a test: it prints figures. Gold is built by the real dbt models (`dbt build`, 90 days of
entries, the models' indexes) from the dev upstream, loaded by the ingestion location's asset;
every baseline runs in the same process, on the same Postgres and Redis:
- materialization: the asset's path (windows, COPY of each user's newest version, Feast's
  hashes) against reading the same rows with COPY and writing the same hashes with a
  pipelined redis-py client (compared byte for byte), in ``--rounds`` alternating rounds on
  an empty Redis after a full garbage collection (no path pays for the other's or the
  set-up's garbage), the best round of each path counting; then an incremental run after some
  users' entries changed and dbt built again, which writes only the users whose values changed;
- online reads of 1 and of 100 users, one at a time: Feast's SDK and the read-only feature
  server over HTTP, each beside raw HMGETs of the same keys and fields;
- the feature server under ``--clients`` concurrent HTTP clients (keep-alive, closed loop) for
  ``--seconds``: throughput and p99 of single-user reads. The client is Debian's wrk
  (installed when missing and root), else an aiohttp client in this process; the output and
  the key ``concurrent_client`` say which ran.

Each ``--entries`` size is built and materialized in turn (the growth curve); reads are
measured at the last size. The last line is one JSON object.

    python -m tests.benchmarks.bench_features [--entries 100000 [1000000 ...]] [--reads 300]
        [--rounds 3] [--no-reads]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from data_platform_dev.stack.processes import ManagedProcess, free_port, wait_until
from data_platform_dev.stack.servers import LocalServers, local_servers

from tests.benchmarks.bench_transform import dbt_build, ingest, newest_entry, settle

VIEW = "user_journal_features"
TABLE = "gold.user_journal_features_history"
PG_TYPES = {"INT32": "int4", "INT64": "int8", "DOUBLE": "float8", "STRING": "text"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--entries", type=int, nargs="+", default=[100_000], help="journal entries, per size"
    )
    parser.add_argument("--users-per-entry", type=float, default=0.1, help="users = entries x this")
    parser.add_argument(
        "--changed-share", type=float, default=0.01, help="users whose entries change"
    )
    parser.add_argument("--reads", type=int, default=300, help="timed requests per scenario")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="concurrent run length")
    parser.add_argument(
        "--rounds", type=int, default=3, help="materializations timed per path (the best counts)"
    )
    parser.add_argument(
        "--no-reads", action="store_true", help="materialization only: skip the read figures"
    )
    args = parser.parse_args()

    figures: dict[str, Any] = {"growth": []}
    for position, entries in enumerate(args.entries):
        users = max(1, round(entries * args.users_per_entry))
        upstream = {"users": users, "entries": entries, "end": data_end().isoformat()}
        with (
            tempfile.TemporaryDirectory(prefix="bench-features-") as tmp,
            local_servers(Path(tmp), redis=True, upstream=upstream) as servers,
        ):
            assert servers.redis is not None
            os.environ.update(
                servers.environment(),
                DBT_TARGET="local",
                DBT_TARGET_PATH=str(servers.state / "dbt-target"),
            )
            size = run(
                servers,
                entries,
                users,
                args,
                reads=not args.no_reads and position == len(args.entries) - 1,
            )
        figures["growth"].append(
            {k: v for k, v in size.items() if not k.startswith(("read", "conc"))}
        )
        figures.update(size)
    if len(args.entries) > 1:
        print("growth:")
        for size in figures["growth"]:
            print(
                f"  {size['entries']:>10,} entries, {size['users']:>8,} users: "
                f"{size['materialize_rows_per_s']:>8,} rows/s, ratio {size['materialize_ratio_to_raw']:.2f}, "
                f"{size['materialize_s']:.2f} s full, {size['incremental_s']:.2f} s incremental"
            )
    print(json.dumps(figures, sort_keys=True))


def data_end() -> datetime:
    """Where the upstream's base entries end: two hours ago, at least two hours into its day
    (else yesterday at 23:00). The changes made later tick on from there (a second each) and
    stay in the past, as dbt's tests require of an as-of time; and the newest base entry (the
    first build's as-of time) falls on the same day as they do, so that unchanged users keep
    their values. Ending at 00:01, as this did in the first two hours of a day, the newest
    base entry came before midnight and every user's row moved to a new day."""
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    if end.hour < 2:
        end = end.replace(hour=0, minute=0, second=0) - timedelta(hours=1)
    return end


def build_gold(servers: LocalServers, changed_users: int = 0) -> float:
    """Ingest from the upstream and `dbt build` as of its newest entry, then VACUUM ANALYZE
    (untimed: not measured; autovacuum's first pass over the new tables would otherwise run
    beside some timed rounds and not others)."""
    api, warehouse = servers.journal_api, servers.warehouse()
    assert api is not None
    if changed_users:
        api.advance(changed_entries=changed_users, new_entries=changed_users)
    started = time.perf_counter()
    ingest(warehouse, api)
    dbt_build(newest_entry(warehouse))  # raises, with dbt's output, when a model or test fails
    seconds = time.perf_counter() - started
    settle(warehouse)
    return seconds


def run(
    servers: LocalServers, entries: int, users: int, args: argparse.Namespace, reads: bool
) -> dict[str, Any]:
    # imported here: Feast takes seconds to import, which no figure should include
    from feature_store import materialization, online_layout, registry_sync
    from feature_store.feast_config import open_feature_store
    from feature_store.repo_contents import load_repo_contents

    assert servers.redis is not None
    client = servers.redis.client()
    seconds = build_gold(servers)
    with psycopg.connect(servers.postgres.url("warehouse"), autocommit=True) as conn:
        (rows,) = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone() or (0,)
        (daily,) = conn.execute("SELECT count(*) FROM gold.user_journal_features").fetchone() or (
            0,
        )
    print(
        f"{entries:,} entries, {users:,} users: dbt built {daily:,} daily rows, "
        f"{rows:,} versions in {TABLE} ({seconds:.1f} s, untimed)"
    )

    store = open_feature_store()
    registry_sync.apply(store, load_repo_contents(store.config.repo_path, store.project))
    store.refresh_registry()
    view = store.get_feature_view(VIEW)

    feast_seconds = raw_seconds = float("inf")
    for _ in range(max(1, args.rounds)):
        started = fresh_start(client)
        (window,) = materialization.materialize(
            store, [view], full_views={VIEW}, client=client, log=print
        )
        feast_seconds = min(feast_seconds, time.perf_counter() - started)
        served = window.rows
        sample = random.Random(7).sample(range(1, users + 1), min(200, users))
        keys = [online_layout.entity_key(store.project, "user_id", u) for u in sample]
        written_by_feast = [client.hgetall(k) for k in keys]

        started = fresh_start(client)
        raw_rows = raw_materialize(servers.postgres.url("warehouse"), client, store.project, view)
        raw_seconds = min(raw_seconds, time.perf_counter() - started)
        assert raw_rows == served, (raw_rows, served)
        # raw HSETs set no TTL; the fields and bytes must equal what the asset wrote
        assert [client.hgetall(k) for k in keys] == written_by_feast, (
            "raw hashes differ from the asset's"
        )

    feast_rate, raw_rate = served / feast_seconds, raw_rows / raw_seconds
    print(
        f"materialize, asset path    : {served:,} rows in {feast_seconds:.2f} s = {feast_rate:,.0f} rows/s"
    )
    print(
        f"COPY + pipelined HSET      : {raw_rows:,} rows in {raw_seconds:.2f} s = {raw_rate:,.0f} rows/s"
    )
    print(f"ratio asset / raw          : {feast_rate / raw_rate:.2f}")

    # Redis back to what the asset wrote, then an incremental run after a dbt build
    client.flushall()
    materialization.materialize(store, [view], full_views={VIEW}, client=client)
    changed_users = max(1, round(users * args.changed_share))
    build_gold(servers, changed_users)
    store.refresh_registry()
    gc.collect()
    started = time.perf_counter()
    (incremental,) = materialization.materialize(
        store, [store.get_feature_view(VIEW)], client=client, log=print
    )
    incremental_seconds = time.perf_counter() - started
    print(
        f"incremental after changes  : {incremental.rows:,} users with a new version, "
        f"{incremental.written:,} written in full, {incremental.rows - incremental.written:,} "
        f"restamped in {incremental_seconds:.2f} s ({changed_users:,} users' entries changed)"
    )
    figures: dict[str, Any] = {
        "entries": entries,
        "users": users,
        "gold_rows": rows,
        "materialize_s": round(feast_seconds, 3),
        "materialize_rows_per_s": round(feast_rate),
        "raw_rows_per_s": round(raw_rate),
        "materialize_ratio_to_raw": round(feast_rate / raw_rate, 3),
        "incremental_s": round(incremental_seconds, 3),
        "incremental_rows": incremental.rows,
        "incremental_written": incremental.written,
    }
    if reads:
        figures.update(read_latencies(store, client, view, servers.state, users, args))
    return figures


def fresh_start(client: redis.Redis) -> float:
    """An empty Redis and no garbage left to collect; then the clock starts."""
    client.flushall()
    gc.collect()
    return time.perf_counter()


def raw_materialize(url: str, client: redis.Redis, project: str, view: Any) -> int:
    """The same newest rows, read with COPY, written as Feast's hashes with pipelined HSETs."""
    from feature_store import online_layout

    names = [f.name for f in view.features]
    types = [f.dtype.to_value_type() for f in view.features]
    casts = ", ".join(f"{n}::{PG_TYPES[t.name]}" for n, t in zip(names, types, strict=True))
    query = (
        f"COPY (SELECT DISTINCT ON (user_id) user_id, event_timestamp, {casts} "
        f"FROM {TABLE} ORDER BY user_id, event_timestamp DESC, updated_at DESC) "
        "TO STDOUT (FORMAT BINARY)"
    )
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cursor,
        cursor.copy(query) as copy,
    ):
        copy.set_types(["int8", "timestamptz", *[PG_TYPES[t.name] for t in types]])
        rows = list(copy.rows())
    fields = [online_layout.feature_field(VIEW, n) for n in names]
    ts_field = online_layout.timestamp_field(VIEW)
    for offset in range(0, len(rows), 10_000):
        chunk = rows[offset : offset + 10_000]
        columns = [
            online_layout.encode_values([row[2 + i] for row in chunk], value_type)
            for i, value_type in enumerate(types)
        ]
        with client.pipeline(transaction=False) as pipe:
            for j, row in enumerate(chunk):
                mapping = {ts_field: online_layout.encode_timestamp(row[1])}
                mapping.update({field: columns[i][j] for i, field in enumerate(fields)})
                pipe.hset(online_layout.entity_key(project, "user_id", row[0]), mapping=mapping)
            pipe.execute()
    return len(rows)


def read_latencies(
    store: Any, client: redis.Redis, view: Any, state: Path, users: int, args: argparse.Namespace
) -> dict[str, float]:
    """p50 and p99 of reading 1 and 100 users: SDK, feature server, raw HMGET; same keys.
    The server is asked through the stdlib's http.client on one kept-alive connection (its
    latency plus little of the client's), and through httpx, as a Python service may call
    it (httpx's own CPU adds about half a millisecond a request). The raw read gets bytes
    and decodes nothing. Then the feature server's throughput and p99 under concurrent
    clients."""
    from contextlib import closing
    from http.client import HTTPConnection
    from urllib.parse import urlsplit

    from feature_store import online_layout

    names = [f.name for f in view.features]
    refs = [f"{VIEW}:{n}" for n in names]
    fields = [online_layout.timestamp_field(VIEW)]
    fields += [online_layout.feature_field(VIEW, n) for n in names]
    rng = random.Random(11)
    figures: dict[str, float] = {}
    gc.collect()
    gc.freeze()  # the benchmark's own start-up objects stay out of its timings
    with (
        feature_server(state) as url,
        httpx.Client(base_url=url, timeout=30) as http,
        closing(HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=30)) as conn,
    ):

        def sdk(batch: list[int]) -> None:
            store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in batch])

        def server(batch: list[int]) -> None:
            """The stdlib's client: the server's latency plus little of the client's own."""
            body = json.dumps({"features": refs, "entities": {"user_id": batch}})
            conn.request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status

        def server_httpx(batch: list[int]) -> None:
            """httpx, as a Python service may call it (its own CPU adds ~0.5 ms a request)."""
            body = {"features": refs, "entities": {"user_id": batch}}
            http.post("/get-online-features", json=body).raise_for_status()

        def raw(batch: list[int]) -> None:
            with client.pipeline(transaction=False) as pipe:
                for user in batch:
                    pipe.hmget(online_layout.entity_key(store.project, "user_id", user), fields)
                pipe.execute()

        scenarios = (
            ("feast_sdk", sdk),
            ("feature_server", server),
            ("feature_server_httpx", server_httpx),
            ("raw_redis", raw),
        )
        for size in (1, 100):
            batches = [rng.sample(range(1, users + 1), min(size, users)) for _ in range(args.reads)]
            for name, read in scenarios:
                p50, p99 = latency(read, batches)
                figures[f"read_{size}_{name}_p50_ms"] = round(p50, 2)
                figures[f"read_{size}_{name}_p99_ms"] = round(p99, 2)
                print(f"read {size:>3} user(s), {name:<20}: p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
        for quantile in ("p50", "p99"):  # the serving goal: 100 users within 2x raw Redis
            ratio = (
                figures[f"read_100_feature_server_{quantile}_ms"]
                / figures[f"read_100_raw_redis_{quantile}_ms"]
            )
            figures[f"read_100_server_to_raw_{quantile}"] = round(ratio, 2)
        print(
            "read 100 users, feature server / raw Redis: "
            f"p50 {figures['read_100_server_to_raw_p50']:.2f}x, "
            f"p99 {figures['read_100_server_to_raw_p99']:.2f}x (goal <= 2)"
        )
        wrk = wrk_binary()
        if wrk:
            tool = "wrk"
            rps, p50, p99 = wrk_reads(wrk, url, refs, users, args.clients, args.seconds, state)
        else:
            tool = "aiohttp"
            rps, p50, p99 = asyncio.run(
                concurrent_reads(url, refs, users, args.clients, args.seconds)
            )
    print(
        f"feature server, {args.clients} clients ({tool}): {rps:,.0f} requests/s, "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (1 user per request, {args.seconds:.0f} s)"
    )
    figures.update(
        concurrent_client=tool,
        concurrent_clients=args.clients,
        concurrent_rps=round(rps),
        concurrent_p50_ms=round(p50, 2),
        concurrent_p99_ms=round(p99, 2),
    )
    return figures


def wrk_binary() -> str | None:
    """Debian's wrk: a C load generator that leaves the 2 cores to the server (an asyncio
    client in Python takes about as much CPU as the server it measures). Installed with
    apt-get when missing and running as root (as CI does); otherwise None, and the aiohttp
    client measures instead."""
    if shutil.which("wrk") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        from data_platform_dev.releases.images_local import ensure_tools

        try:
            ensure_tools({"wrk": "wrk"})
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"could not install wrk ({error}): measuring with aiohttp")
    return shutil.which("wrk")


# one user per request, drawn at random; the summary as JSON (latencies in microseconds)
WRK_SCRIPT = """
local features, users = {features}, {users}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = '{{"features":' .. features .. ',"entities":{{"user_id":[' .. math.random(users) .. ']}}}}'
  return wrk.format(nil, "/get-online-features", nil, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {{"requests":%d,"seconds":%f,"p50_us":%d,"p99_us":%d,"errors":%d}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_reads(
    wrk: str, url: str, refs: list[str], users: int, clients: int, seconds: float, state: Path
) -> tuple[float, float, float]:
    """wrk with ``clients`` kept-alive connections on one thread, after a 1 s warm-up:
    requests/s, p50, p99 (ms). Any failed request fails the benchmark."""
    script = state / "bench-features.lua"
    script.write_text(WRK_SCRIPT.format(features=json.dumps(json.dumps(refs)), users=users))

    def run(duration: float) -> dict[str, Any]:
        done = subprocess.run(
            [wrk, "-t1", f"-c{clients}", f"-d{duration:g}s", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
        )
        (line,) = [line for line in done.stdout.splitlines() if line.startswith("WRK ")]
        summary = json.loads(line.removeprefix("WRK "))
        assert summary["errors"] == 0 and summary["requests"] > 0, done.stdout
        return summary

    import resource

    run(1)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = run(seconds)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    # what the client takes from the cores it shares with the server and Redis
    print(f"wrk itself used {used / summary['seconds']:.2f} of a core")
    return (
        summary["requests"] / summary["seconds"],
        summary["p50_us"] / 1000,
        summary["p99_us"] / 1000,
    )


async def concurrent_reads(
    url: str, refs: list[str], users: int, clients: int, seconds: float
) -> tuple[float, float, float]:
    """``clients`` closed-loop clients on kept-alive connections: requests/s, p50, p99 (ms)."""
    import aiohttp

    samples: list[float] = []

    async def client_loop(session: aiohttp.ClientSession, seed: int, until: float) -> None:
        rng = random.Random(seed)
        while (now := time.perf_counter()) < until:
            body = {"features": refs, "entities": {"user_id": [rng.randint(1, users)]}}
            async with session.post(f"{url}/get-online-features", json=body) as response:
                response.raise_for_status()
                await response.read()
            samples.append(time.perf_counter() - now)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm_up = time.perf_counter() + 1
        await asyncio.gather(*(client_loop(session, i, warm_up) for i in range(clients)))
        samples.clear()
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(session, i, started + seconds) for i in range(clients)))
        elapsed = time.perf_counter() - started
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return len(samples) / elapsed, statistics.median(samples) * 1000, p99 * 1000


def latency(read: Callable[[list[int]], None], batches: Sequence[list[int]]) -> tuple[float, float]:
    """p50 and p99 in milliseconds, after a warm-up (connections, registry cache)."""
    for batch in batches[:20]:
        read(batch)
    samples = []
    for batch in batches:
        started = time.perf_counter()
        read(batch)
        samples.append(time.perf_counter() - started)
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return statistics.median(samples) * 1000, p99 * 1000


@contextmanager
def feature_server(state: Path) -> Iterator[str]:
    """The read-only feature server (python -m feature_store.serving, its default workers) on
    a free port, once every worker has started."""
    port, log = free_port(), state / "feature-server.log"
    process = ManagedProcess(
        "feature-server",
        [sys.executable, "-m", "feature_store.serving", "--port", str(port)],
        log_path=log,
        env=dict(os.environ),
    ).start()
    url = f"http://127.0.0.1:{port}"
    from feature_store.serving.server import parse_args

    workers = parse_args([]).workers  # what the server decides: its default, or the variable
    try:
        started = lambda: log.read_text().count("Application startup complete") >= workers  # noqa: E731
        wait_until(started, "feature server", 180, process)
        print(f"feature server: {workers} worker(s)")
        yield url
    finally:
        process.stop()


if __name__ == "__main__":
    main()
