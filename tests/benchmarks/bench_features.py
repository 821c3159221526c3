"""Benchmark: materialize 100,000 users into Redis, then read them back; raw baselines beside.

Not a test: it prints figures. Every baseline runs in the same process, on the same Postgres
and Redis:
- materialization: the asset's path (window, then Feast's materialize of each user's newest
  gold row) against reading the same rows with COPY and writing the same hashes with a
  pipelined redis-py client (compared byte for byte with what Feast wrote);
- online reads of 1 and of 100 users: Feast's SDK and the read-only feature server over HTTP,
  each beside raw HMGETs of the same keys and fields.

    python -m tests.benchmarks.bench_features [--users 100000] [--days 14] [--reads 300]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from data_platform_dev.stack.postgres import LocalPostgres
from data_platform_dev.stack.processes import ManagedProcess, free_port, wait_until
from data_platform_dev.stack.servers import local_servers

VIEW = "user_journal_features"
# users have 1..days daily rows ending today; as dbt builds them, no row lies in the future
GOLD = """
CREATE SCHEMA gold;
CREATE TABLE gold.user_journal_features_history AS
SELECT u::bigint AS user_id, d::date AS feature_date,
       least(d + interval '1 day' - interval '1 microsecond', now() - interval '5 minutes')
           AS event_timestamp,
       (u + day) % 9 AS entries_7d,
       (u * 3 + day) % 31 AS entries_30d,
       CASE WHEN u % 5 = 0 THEN NULL ELSE 1 + (u + day) % 40 / 10.0 END::double precision
           AS avg_mood_30d,
       ((u * 7 + day) % 1000) / 10.0::double precision AS avg_score_30d,
       ((u + day) * 13)::bigint AS minutes_30d,
       CASE WHEN u % 4 = 0 THEN NULL
            ELSE (ARRAY['chess', 'sudoku', 'wordle'])[1 + (u + day) % 3] END
           AS favorite_game_type,
       day % 3 AS days_since_last_entry,
       (u + day) % 6 AS current_streak_days,
       now() AS updated_at
FROM generate_series(1, {users}) AS u,
     generate_series(0, {days} - 1) AS day,
     LATERAL (SELECT date_trunc('day', now()) - day * interval '1 day' AS d) AS days
WHERE day <= u % {days};
CREATE TABLE gold.game_type_stats_history AS
SELECT g::bigint AS game_type_id, 'game ' || g AS game_type_name,
       'category ' || g % 4 AS category, d::date AS feature_date,
       least(d + interval '1 day' - interval '1 microsecond', now() - interval '5 minutes')
           AS event_timestamp,
       g + day AS entries_1d, 30 * g + day AS entries_30d, 10 * g AS active_users_30d,
       50.0::double precision + g AS avg_score_30d, 3.0::double precision AS avg_mood_30d,
       12.5::double precision + day AS avg_duration_minutes_30d, now() AS updated_at
FROM generate_series(1, 12) AS g, generate_series(0, 29) AS day,
     LATERAL (SELECT date_trunc('day', now()) - day * interval '1 day' AS d) AS days;
ANALYZE gold.user_journal_features_history;
"""
PG_TYPES = {"INT32": "int4", "INT64": "int8", "DOUBLE": "float8", "STRING": "text"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=14, help="most daily gold rows per user")
    parser.add_argument("--reads", type=int, default=300, help="timed requests per scenario")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="bench-features-") as tmp,
        local_servers(Path(tmp), redis=True) as servers,
    ):
        assert servers.redis is not None
        os.environ.update(servers.environment())
        figures = run(servers.postgres, servers.redis.client(), servers.state, args)
    print(json.dumps(figures, sort_keys=True))


def run(
    postgres: LocalPostgres, client: redis.Redis, state: Path, args: argparse.Namespace
) -> dict[str, Any]:
    # imported here: Feast takes seconds to import, which no figure should include
    from feature_store import materialization, online_layout, registry_sync
    from feature_store.feast_config import open_feature_store
    from feature_store.repo_contents import load_repo_contents

    started = time.perf_counter()
    with psycopg.connect(postgres.url("warehouse"), autocommit=True) as conn:
        conn.execute(GOLD.format(users=args.users, days=args.days).encode())
        (rows,) = conn.execute(
            "SELECT count(*) FROM gold.user_journal_features_history"
        ).fetchone() or (0,)
    built = time.perf_counter() - started
    print(
        f"gold.user_journal_features_history : {rows:,} rows for {args.users:,} users ({built:.1f} s)"
    )

    store = open_feature_store()
    registry_sync.apply(store, load_repo_contents(store.config.repo_path, store.project))
    store.refresh_registry()
    view = store.get_feature_view(VIEW)

    client.flushall()
    started = time.perf_counter()
    (window,) = materialization.materialize(store, [view], full_views={VIEW})
    feast_seconds = time.perf_counter() - started
    assert window.rows == args.users, window
    sample = random.Random(7).sample(range(1, args.users + 1), 200)
    keys = [online_layout.entity_key(store.project, "user_id", u) for u in sample]
    written_by_feast = [client.hgetall(k) for k in keys]

    client.flushall()
    started = time.perf_counter()
    raw_rows = raw_materialize(postgres, client, store.project, view)
    raw_seconds = time.perf_counter() - started
    assert raw_rows == args.users
    assert [client.hgetall(k) for k in keys] == written_by_feast, "raw hashes differ from Feast's"

    feast_rate, raw_rate = window.rows / feast_seconds, raw_rows / raw_seconds
    print(
        f"materialize, asset path    : {window.rows:,} rows in {feast_seconds:.2f} s "
        f"= {feast_rate:,.0f} rows/s"
    )
    print(
        f"COPY + pipelined HSET      : {raw_rows:,} rows in {raw_seconds:.2f} s "
        f"= {raw_rate:,.0f} rows/s"
    )
    print(f"ratio Feast / raw          : {feast_rate / raw_rate:.2f}")
    figures: dict[str, Any] = {
        "users": args.users,
        "gold_rows": rows,
        "materialize_rows_per_s": round(feast_rate),
        "raw_rows_per_s": round(raw_rate),
        "materialize_ratio_to_raw": round(feast_rate / raw_rate, 3),
    }
    figures.update(read_latencies(store, client, view, state, args))
    return figures


def raw_materialize(postgres: LocalPostgres, client: redis.Redis, project: str, view: Any) -> int:
    """The same newest rows, read with COPY, written as Feast's hashes with pipelined HSETs."""
    from feature_store import online_layout

    names = [f.name for f in view.features]
    types = [f.dtype.to_value_type() for f in view.features]
    query = (
        f"COPY (SELECT DISTINCT ON (user_id) user_id, event_timestamp, {', '.join(names)} "
        "FROM gold.user_journal_features_history ORDER BY user_id, event_timestamp DESC, updated_at DESC) "
        "TO STDOUT (FORMAT BINARY)"
    )
    with (
        psycopg.connect(postgres.url("warehouse")) as conn,
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
    store: Any, client: redis.Redis, view: Any, state: Path, args: argparse.Namespace
) -> dict[str, float]:
    """p50 and p99 of reading 1 and 100 users: SDK, feature server, raw HMGET; same keys."""
    from feature_store import online_layout

    names = [f.name for f in view.features]
    refs = [f"{VIEW}:{n}" for n in names]
    fields = [online_layout.timestamp_field(VIEW)]
    fields += [online_layout.feature_field(VIEW, n) for n in names]
    rng = random.Random(11)
    figures = {}
    with feature_server(state) as url, httpx.Client(base_url=url, timeout=30) as http:

        def sdk(users: list[int]) -> None:
            store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in users])

        def server(users: list[int]) -> None:
            body = {"features": refs, "entities": {"user_id": users}}
            http.post("/get-online-features", json=body).raise_for_status()

        def raw(users: list[int]) -> None:
            with client.pipeline(transaction=False) as pipe:
                for user in users:
                    pipe.hmget(online_layout.entity_key(store.project, "user_id", user), fields)
                pipe.execute()

        for size in (1, 100):
            batches = [rng.sample(range(1, args.users + 1), size) for _ in range(args.reads)]
            for name, read in (("feast_sdk", sdk), ("feature_server", server), ("raw_redis", raw)):
                p50, p99 = latency(read, batches)
                figures[f"read_{size}_{name}_p50_ms"] = round(p50, 2)
                figures[f"read_{size}_{name}_p99_ms"] = round(p99, 2)
                print(f"read {size:>3} user(s), {name:<14}: p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    return figures


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
    """The read-only feature server (python -m feature_store.serving) on a free port."""
    port = free_port()
    process = ManagedProcess(
        "feature-server",
        [sys.executable, "-m", "feature_store.serving", "--port", str(port)],
        log_path=state / "feature-server.log",
        env=dict(os.environ),
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        healthy = lambda: httpx.get(f"{url}/health").status_code == 200  # noqa: E731
        wait_until(healthy, "feature server", 180, process)
        yield url
    finally:
        process.stop()


if __name__ == "__main__":
    main()
