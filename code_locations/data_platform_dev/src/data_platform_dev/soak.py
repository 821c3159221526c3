"""``make soak``: many cycles of upstream changes through the real local stack, with faults.

Each cycle changes the dev upstream through its admin endpoints (new, updated, late, moved and
deleted entries, now and then a deleted user), launches the ingestion job through the
webserver's GraphQL API and waits for the automated dbt and Feast runs. Faults, drawn from a
seeded random generator and printed, hit about every other cycle:

- ``upstream_5xx``: the upstream answers 503 at random (error_rate) or for the next N calls;
- ``worker_kill``: SIGKILL of the ingestion run's worker process (``dagster api execute_run``)
  while it loads (the upstream slowed down so the load is still going);
- ``redis_outage``: Redis frozen with SIGSTOP for some seconds while the materialization runs,
  then SIGCONT and ``CLIENT KILL TYPE normal`` (every connection dropped, as a restart does).
  A real restart would stop the stack: its supervisor does not restart Postgres or Redis;
- ``overlapping_run``: a second ingestion, or a manual ``rebuild_gold_job`` while automation's
  dbt run is going.

Failed runs are expected under faults; the next cycle, and one clean catch-up cycle at the
end, must converge. Then it compares raw with the upstream, gold with a ``--full-refresh`` build
of the same raw data in a second database, Redis (through the feature server) with gold for
every user, and the exports' manifest and Parquet objects with gold. The last line is one JSON
object with the counts.

    python -m data_platform_dev.soak --cycles 20 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster_graphql import DagsterGraphQLClient
from data_platform import settings
from data_platform.locations import FEATURE_STORE, INGESTION, LOCATIONS, TRANSFORMATION
from psycopg import sql

from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.cli import Stack, StackConfig
from data_platform_dev.stack.processes import (
    StackError,
    StopRequested,
    free_port,
    raise_if_stop_requested,
    stop_on_signals,
)
from data_platform_dev.stack.supervision import supervise_once

FAULT_KINDS = ("upstream_5xx", "worker_kill", "redis_outage", "overlapping_run")
INGEST_JOB = "ingest_journal_app_job"
GOLD_JOB = "rebuild_gold_job"
FEAST_JOB = "materialize_online_features_job"
# what the comparisons read, and the gold each is built from
DOWNSTREAM_OF_GOLD = {
    AssetKey(["exports", "user_journal_features"]): [AssetKey(["gold", "user_journal_features"])],
    AssetKey(["exports", "game_type_stats"]): [AssetKey(["gold", "game_type_stats"])],
    AssetKey(["materialize_user_journal_features"]): [
        AssetKey(["gold", "user_journal_features_history"]),
        AssetKey(["gold", "game_type_stats_history"]),
    ],
}
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
GOLD_TABLES = ("user_journal_features", "game_type_stats")
USER_FEATURES = (
    "entries_7d",
    "entries_30d",
    "avg_mood_30d",
    "avg_score_30d",
    "minutes_30d",
    "favorite_game_type",
    "days_since_last_entry",
    "current_streak_days",
)
UPSTREAM_FIELDS = {
    "users": ("id", "name", "email", "created_at", "updated_at"),
    "journal_entries": (
        "id",
        "user_id",
        "game_type_id",
        "created_at",
        "updated_at",
        "duration_minutes",
        "score",
        "mood",
    ),
}
REFRESH_DATABASE = "soak_full_refresh"
PORT_VARIABLES = (
    "PLATFORM_POSTGRES_PORT",
    "PLATFORM_REDIS_PORT",
    "PLATFORM_JOURNAL_API_PORT",
    "PLATFORM_WEBSERVER_PORT",
    "PLATFORM_FEATURE_SERVER_PORT",
    *[location.port_variable for location in LOCATIONS],
)
REPO = Path(__file__).resolve().parents[4]

_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[soak +{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


@dataclass
class Tally:
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    runs: collections.Counter[str] = field(default_factory=collections.Counter)
    changes: collections.Counter[str] = field(default_factory=collections.Counter)
    missed: collections.Counter[str] = field(default_factory=collections.Counter)  # planned


class Soak:
    def __init__(self, stack: Stack, seed: int, fault_rate: float, size: int) -> None:
        self.stack = stack
        self.random = random.Random(seed)
        self.fault_rate = fault_rate
        self.size = size  # new entries per cycle; the other changes scale with it
        self.tally = Tally()
        self.instance = DagsterInstance.get()
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=stack.config.webserver_port)
        self.deleted_users: set[int] = set()
        # the highest ids handed out so far (the upstream numbers new rows on from these)
        self.top = {"users": stack.config.users, "journal_entries": stack.config.entries}
        self.runs_seen: set[str] = set()

    @property
    def api(self) -> JournalApiProcess:
        assert self.stack.journal_api is not None
        return self.stack.journal_api

    # --- waiting, with the stack's supervisor kept going -------------------------------------

    def tick(self, seconds: float = 0.5) -> None:
        """Sleep while restarting crashed processes, as ``make dev``'s supervisor does."""
        raise_if_stop_requested()
        if supervise_once(self.stack.services, self.stack.say):
            self.stack._record_processes()
        time.sleep(seconds)

    def runs_since(self, since: float) -> list[Any]:
        runs = self.instance.get_runs(RunsFilter(created_after=datetime.fromtimestamp(since, UTC)))
        return [r for r in runs if r.remote_job_origin is not None]

    def launch(self, job: str, location: str) -> str:
        run_id = self.client.submit_job_execution(
            job, repository_location_name=location, repository_name="__repository__"
        )
        say(f"launched {job} ({location}) as run {run_id[:8]}")
        return run_id

    def wait_run(self, run_id: str, timeout: float = 300) -> DagsterRunStatus | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.status in FINISHED:
                return run.status
            self.tick()
        return None

    def wait_quiet(
        self,
        since: float,
        timeout: float,
        settle: float = 5.0,
        downstream: tuple[str, ...] = (TRANSFORMATION.name, FEATURE_STORE.name),
        started: bool = False,
    ) -> bool:
        """Until the runs created after ``since`` in the ``downstream`` locations and
        ingestion finished and none started for ``settle`` s, with a finished run of each
        downstream location once ingestion succeeded. ``started``: a downstream run that has
        begun is enough (it goes on beside the next cycle)."""
        began = FINISHED | {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED}
        watched = {INGESTION.name, *downstream}
        deadline = time.monotonic() + timeout
        quiet_since, known = time.monotonic(), 0
        runs: list[Any] = []
        while time.monotonic() < deadline:
            runs = [
                r for r in self.runs_since(since) if r.remote_job_origin.location_name in watched
            ]
            if len(runs) != known:
                known, quiet_since = len(runs), time.monotonic()
            busy = [
                r
                for r in runs
                if r.status not in FINISHED
                and not (started and r.remote_job_origin.location_name in downstream)
            ]
            by_location = {
                r.remote_job_origin.location_name
                for r in runs
                if r.status in (began if started else FINISHED)
            }
            ingested = any(
                r.remote_job_origin.location_name == INGESTION.name
                and r.status == DagsterRunStatus.SUCCESS
                for r in runs
            )
            chained = not ingested or set(downstream) <= by_location
            if started and ingested and not busy and time.monotonic() - quiet_since > 20:
                # automation counted the load as handled: a manual gold run that overlapped it
                # materialized gold after it; the next load triggers dbt again
                say(
                    "no dbt run started within 20 s of this load (a dbt run that was going took it)"
                )
                self.tally.runs["ingestion:no_dbt_run_within_20s"] += 1
                chained = True
            if not busy and chained and time.monotonic() - quiet_since >= settle:
                self.record_runs(self.runs_since(since))
                return True
            self.tick(1.0)
        self.record_runs(self.runs_since(since))
        say(f"runs did not settle within {timeout:.0f} s")
        return False

    def record_runs(self, runs: Iterable[Any]) -> None:
        for run in runs:
            if run.run_id not in self.runs_seen and run.status in FINISHED:
                self.runs_seen.add(run.run_id)
                key = f"{run.remote_job_origin.location_name}:{run.status.value.lower()}"
                self.tally.runs[key] += 1
                if run.status != DagsterRunStatus.SUCCESS:
                    say(f"run {run.run_id[:8]} {run.job_name} ended {run.status.value}")

    # --- the upstream ------------------------------------------------------------------------

    def change_upstream(self) -> None:
        """New, updated, late, moved and deleted entries, and now and then a deleted user."""
        r, n = self.random, self.size
        counts = self.api.advance(
            new_entries=n,
            changed_entries=max(1, n // 2),
            new_users=(new_users := r.randint(0, 2)),
            late_seconds=r.choice([0, 0, 30, 120]),  # a late commit, inside the look-back
        )
        entries, users = counts["journal_entries"], counts["users"]
        self.top["journal_entries"] += n
        self.top["users"] += new_users
        self.tally.changes["new"] += n
        self.tally.changes["updated"] += max(1, n // 2)
        top_entry, top_user = self.top["journal_entries"], self.top["users"]
        for _ in range(max(1, n // 5)):  # late: a new entry played days ago
            if self._move(top_entry - r.randint(0, n - 1), days=-r.randint(1, 5)):
                self.tally.changes["late"] += 1
        for _ in range(max(1, n // 5)):  # moved: an older entry to another day or user
            user = r.randint(1, top_user) if r.random() < 0.5 else None
            if self._move(r.randint(1, top_entry), user_id=user, days=-r.randint(0, 3)):
                self.tally.changes["moved"] += 1
        for _ in range(max(1, n // 10)):
            if self._delete("journal_entries", r.randint(1, top_entry)):
                self.tally.changes["deleted"] += 1
        if r.random() < 0.4 and self._delete("users", r.randint(1, top_user)):
            self.tally.changes["deleted_users"] += 1
        say(
            f"upstream: {users} users, {entries} entries; changes so far {dict(self.tally.changes)}"
        )

    def _move(self, entry: int, user_id: int | None = None, days: int = 0) -> bool:
        if user_id in self.deleted_users:
            return False
        with contextlib.suppress(httpx.HTTPStatusError):  # a deleted entry or user
            self.api.move(entry, user_id=user_id, days=days)
            return True
        return False

    def _delete(self, entity: str, row_id: int) -> bool:
        with contextlib.suppress(httpx.HTTPStatusError):
            self.api.delete(entity, row_id)
            if entity == "users":
                self.deleted_users.add(row_id)
            return True
        return False

    # --- faults ------------------------------------------------------------------------------

    def worker_processes(self, run_id: str) -> list[psutil.Process]:
        """The run's worker and everything under it, as a pod holds them.

        A code server starts the worker through multiprocessing (``spawn_main``), so its command
        line does not name the run; the compute-log tails it starts do
        (``storage/<run id>/compute_logs``), and the worker is their topmost spawned ancestor.
        """
        for process in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                line = " ".join(process.info["cmdline"] or [])
                if run_id not in line:
                    continue
                worker = process if "execute_run" in line else process.parent()
                while worker is not None:
                    parent = worker.parent()
                    if parent is None or "spawn_main" not in " ".join(parent.cmdline()):
                        break
                    worker = parent
                if worker is not None and "spawn_main" in " ".join(worker.cmdline()):
                    return [worker, *worker.children(recursive=True)]
                if worker is not None and "execute_run" in " ".join(worker.cmdline()):
                    return [worker, *worker.children(recursive=True)]
        return []

    def kill_worker(self, run_id: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            processes = self.worker_processes(run_id)
            if processes:  # the tails exist once a step runs: the load is under way
                time.sleep(self.random.uniform(0, 1.5))
                processes = self.worker_processes(run_id) or processes
                for process in processes:
                    with contextlib.suppress(psutil.Error):
                        process.kill()
                say(
                    f"fault worker_kill: SIGKILL to run {run_id[:8]}'s worker (pid "
                    f"{processes[0].pid}) and its {len(processes) - 1} child process(es)"
                )
                return True
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.status in FINISHED:
                say(f"fault worker_kill: run {run_id[:8]} ended before its worker was caught")
                return False
            time.sleep(0.2)
        say(f"fault worker_kill: no worker of run {run_id[:8]} within {timeout:g} s")
        return False

    def redis_outage(self, since: float, seconds: float) -> bool:
        """Freeze Redis while a materialization runs, then thaw it and drop every client."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(
                r.remote_job_origin.location_name == FEATURE_STORE.name
                and r.status == DagsterRunStatus.STARTED
                for r in self.runs_since(since)
            ):
                break
            self.tick(0.3)
        else:
            say("fault redis_outage: no materialization started; Redis frozen anyway")
        redis = self.stack.redis
        assert redis is not None and redis.process is not None
        os.kill(redis.process.pid, signal.SIGSTOP)
        say(f"fault redis_outage: Redis (pid {redis.process.pid}) stopped for {seconds:.0f} s")
        try:
            time.sleep(seconds)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        killed = redis.client().client_kill_filter(_type="normal", skipme=True)
        say(f"fault redis_outage: Redis resumed, {killed} client connection(s) dropped")
        return True

    def overlap_gold(self, since: float) -> bool:
        """A manual gold rebuild as soon as automation's dbt run exists (queued or going),
        or after 20 s without one (a dbt run that was going took the load: see wait_quiet)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            dbt = [
                run
                for run in self.runs_since(since)
                if run.remote_job_origin.location_name == TRANSFORMATION.name
            ]
            if dbt:
                say(f"fault overlapping_run: automation's dbt run is {dbt[0].status.value}")
                self.launch(GOLD_JOB, TRANSFORMATION.name)
                return True
            self.tick(0.3)
        say("fault overlapping_run: no automated dbt run followed the load; rebuilding anyway")
        self.launch(GOLD_JOB, TRANSFORMATION.name)
        return True

    # --- one cycle ---------------------------------------------------------------------------

    def cycle(self, number: int, fault: str | None, timeout: float) -> bool:
        """One cycle; True when its fault was injected (a run may end before it is hit)."""
        say(f"cycle {number}: fault {fault or 'none'}")
        injected = fault in ("upstream_5xx", "redis_outage")
        self.change_upstream()
        since = time.time() - 1
        if fault == "upstream_5xx":
            faults = (
                {"error_rate": round(self.random.uniform(0.2, 0.6), 2)}
                if self.random.random() < 0.5
                else {"fail_next": self.random.randint(2, 8)}
            )
            self.api.set_faults(**faults)
            say(f"fault upstream_5xx: {faults}")
        if fault == "worker_kill":
            self.api.set_faults(latency_ms=1500)  # a load of several seconds: killed mid-way
        run_id = self.launch(INGEST_JOB, INGESTION.name)
        overlap = None
        if fault == "overlapping_run":
            overlap = self.random.choice(["ingestion", "gold"])
            say(f"fault overlapping_run: a second {overlap} run")
            if overlap == "ingestion":
                self.launch(INGEST_JOB, INGESTION.name)
                injected = True
        if fault == "worker_kill":  # a miss (a run slow to start) is made up in a later cycle
            injected = self.kill_worker(run_id)
        status = self.wait_run(run_id, timeout)
        say(f"ingestion run {run_id[:8]}: {status.value if status else 'not finished'}")
        if fault in ("upstream_5xx", "worker_kill"):
            self.api.set_faults()
        if overlap == "gold":
            injected = self.overlap_gold(since)
        if fault == "redis_outage":
            self.redis_outage(since, self.random.uniform(5, 12))
        # the dbt and Feast runs automation starts go on beside the next cycle's changes and
        # ingestion (automation runs one at a time per asset); the catch-up waits for all
        self.wait_quiet(since, timeout, settle=0, downstream=(TRANSFORMATION.name,), started=True)
        return injected

    def catch_up(self, timeout: float) -> None:
        """A clean cycle without upstream changes or faults; retries what is still failing."""
        say("catch-up: one clean ingestion and its automation, no faults")
        self.api.set_faults()
        for attempt in range(3):
            since = time.time() - 1
            run_id = self.launch(INGEST_JOB, INGESTION.name)
            if self.wait_run(run_id, timeout) == DagsterRunStatus.SUCCESS:
                self.wait_quiet(since, timeout, settle=10)
                break
            say(f"catch-up ingestion failed (attempt {attempt + 1})")
        for job, location in ((GOLD_JOB, TRANSFORMATION.name), (FEAST_JOB, FEATURE_STORE.name)):
            latest = self.latest_run(location)
            if latest is None or latest.status != DagsterRunStatus.SUCCESS:
                say(f"catch-up: the last {location} run did not succeed: retrying {job}")
                since = time.time() - 1
                self.wait_run(self.launch(job, location), timeout)
                self.wait_quiet(since, timeout, settle=10)
        self.wait_downstream_current(timeout)

    def wait_downstream_current(self, timeout: float) -> bool:
        """Until each asset built from gold was materialized after the gold it reads.

        Quiet runs are not enough on a busy machine: automation may request the exports or
        Feast run for the last gold build more than the settle time after it landed, and the
        comparison would then read a build older than gold.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = [
                "/".join(key.path)
                for key, sources in DOWNSTREAM_OF_GOLD.items()
                if self._materialized_at(key) < max(map(self._materialized_at, sources))
            ]
            if not behind:
                return True
            self.tick(1.0)
        say(f"still older than the gold they read after {timeout:.0f} s: {', '.join(behind)}")
        return False

    def _materialized_at(self, key: AssetKey) -> float:
        event = self.instance.get_latest_materialization_event(key)
        return event.timestamp if event is not None else 0.0

    def latest_run(self, location: str) -> Any:
        runs = [
            r
            for r in self.instance.get_runs(limit=50)
            if r.remote_job_origin is not None and r.remote_job_origin.location_name == location
        ]
        return runs[0] if runs else None


# --- comparisons -------------------------------------------------------------------------------


def _moment(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        return datetime.fromisoformat(value).astimezone(UTC)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def upstream_rows(api_url: str, table: str) -> dict[int, tuple[Any, ...]]:
    """Every live row the upstream serves now, by id."""
    rows: dict[int, tuple[Any, ...]] = {}
    cursor = None
    names = UPSTREAM_FIELDS[table]
    while True:
        params = {"limit": 50_000, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api_url}/api/v1/{table}", params=params, timeout=60).json()
        for row in page["data"]:
            rows[row["id"]] = tuple(_moment(row[n]) for n in names)
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def compare_raw(conn: psycopg.Connection[Any], api_url: str) -> tuple[int, int, list[str]]:
    """Rows differing between raw and the upstream (missing, extra or unequal), rows compared."""
    mismatches, compared, examples = 0, 0, []
    for table, names in UPSTREAM_FIELDS.items():
        expected = upstream_rows(api_url, table)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier("raw", table)
        )
        actual = {row[0]: tuple(map(_moment, row)) for row in conn.execute(query)}
        compared += len(expected.keys() | actual.keys())
        for row_id in sorted(expected.keys() | actual.keys()):
            if expected.get(row_id) != actual.get(row_id):
                mismatches += 1
                examples.append(
                    f"raw.{table} id {row_id}: raw {actual.get(row_id)}, upstream {expected.get(row_id)}"
                )
    return mismatches, compared, examples


def gold_columns(conn: psycopg.Connection[Any], table: str, exclude: set[str]) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'gold' "
        "AND table_name = %s ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [name for (name,) in rows if name not in exclude]


def gold_rows(conn: psycopg.Connection[Any], table: str, columns: list[str]) -> list[tuple]:
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier("gold", table)
    )
    return [tuple(map(_plain, row)) for row in conn.execute(query)]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if hasattr(value, "as_py"):
        return _plain(value.as_py())
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def multiset_difference(left: Iterable[tuple], right: Iterable[tuple]) -> list[tuple[str, tuple]]:
    a, b = collections.Counter(left), collections.Counter(right)
    return [("only left", row) for row in (a - b).elements()] + [
        ("only right", row) for row in (b - a).elements()
    ]


def copy_raw(source: psycopg.Connection[Any], target: psycopg.Connection[Any]) -> list[str]:
    """Schema raw, table by table (columns and rows), into another database."""
    tables = [
        name
        for (name,) in source.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'raw' ORDER BY tablename"
        )
    ]
    target.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for table in tables:
        columns = source.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [f"raw.{table}"],
        ).fetchall()
        target.execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                sql.Identifier("raw", table),
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns
                ),
            )
        )
        name = sql.Identifier("raw", table)
        with (
            source.cursor().copy(sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(name)) as out,
            target.cursor().copy(
                sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(name)
            ) as into,
        ):
            for chunk in out:
                into.write(chunk)
    return tables


def full_refresh(admin_url: str, warehouse_url: str, as_of: datetime, work: Path) -> str:
    """dbt --full-refresh of the same raw data, as of the last build, in a second database."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {REFRESH_DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {REFRESH_DATABASE}")
    refresh_url = warehouse_url.rsplit("/", 1)[0] + f"/{REFRESH_DATABASE}"
    with (
        psycopg.connect(warehouse_url) as source,
        psycopg.connect(refresh_url, autocommit=True) as target,
    ):
        copy_raw(source, target)
    env = {
        **os.environ,
        "WAREHOUSE_DB": REFRESH_DATABASE,
        "DBT_TARGET_PATH": str(work / "dbt-target"),
        "DBT_LOG_PATH": str(work / "dbt-logs"),
    }
    dbt_dir = REPO / "dbt"
    command = [
        str(Path(sys.executable).parent / "dbt"),
        "run",
        "--full-refresh",
        "--project-dir",
        str(dbt_dir),
        "--profiles-dir",
        str(dbt_dir / "profiles"),
        "--vars",
        json.dumps({"as_of": as_of.isoformat()}),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise StackError(f"dbt --full-refresh failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return refresh_url


def compare_gold(warehouse_url: str, refresh_url: str) -> tuple[int, int, list[str]]:
    mismatches, compared, examples = 0, 0, []
    with psycopg.connect(warehouse_url) as inc, psycopg.connect(refresh_url) as full:
        for table in GOLD_TABLES:
            columns = gold_columns(inc, table, {"updated_at"})
            incremental, refreshed = gold_rows(inc, table, columns), gold_rows(full, table, columns)
            compared += max(len(incremental), len(refreshed))
            diff = multiset_difference(incremental, refreshed)
            mismatches += len(diff)
            examples += [
                f"gold.{table} {side.replace('left', 'incremental').replace('right', 'full refresh')}: "
                f"{dict(zip(columns, row, strict=True))}"
                for side, row in diff[:10]
            ]
    return mismatches, compared, examples


def compare_online(
    conn: psycopg.Connection[Any], server: str, user_ids: list[int], deleted: set[int]
) -> tuple[int, int, list[str]]:
    """Every user's served features against gold's row of the as-of date (none: not served)."""
    columns = ", ".join(USER_FEATURES)
    expected = {
        row[0]: tuple(map(_plain, row[1:]))
        for row in conn.execute(
            f"SELECT user_id, {columns} FROM gold.user_journal_features WHERE feature_date = "
            "(SELECT max(feature_date) FROM gold.user_journal_features)"
        )
    }
    mismatches, compared, examples = 0, 0, []
    served_users = 0
    leftover = set(expected) - set(user_ids)
    if leftover:
        mismatches += len(leftover)
        examples.append(f"gold has users the upstream does not: {sorted(leftover)[:10]}")
    features = [f"user_journal_features:{name}" for name in USER_FEATURES]
    for start in range(0, len(user_ids), 250):
        batch = user_ids[start : start + 250]
        response = httpx.post(
            f"{server}/get-online-features",
            json={"features": features, "entities": {"user_id": batch}},
            timeout=60,
        )
        response.raise_for_status()
        body = response.json()
        names = body["metadata"]["feature_names"]
        results = dict(zip(names, body["results"], strict=True))
        for index, user in enumerate(batch):
            served = tuple(_plain(results[name]["values"][index]) for name in USER_FEATURES)
            want = expected.get(user, (None,) * len(USER_FEATURES))
            compared += 1
            served_users += any(v is not None for v in served)
            if user in deleted and want != (None,) * len(USER_FEATURES):
                mismatches += 1
                examples.append(f"deleted user {user} still in gold: {want}")
            if served != want:
                mismatches += 1
                examples.append(f"user {user}: served {served}, gold {want}")
    say(f"online: {compared} users compared, {served_users} served with values")
    return mismatches, compared, examples


def compare_exports(conn: psycopg.Connection[Any], export_uri: str) -> tuple[int, int, list[str]]:
    """The manifest's build of each table against gold as it is now."""
    from transformation.gold_exports import read_manifest, read_table
    from transformation.object_store import ExportStore

    store = ExportStore(uri=export_uri)
    manifest = read_manifest(store)
    mismatches, compared, examples = 0, 0, []
    for table in GOLD_TABLES:
        exported = read_table(store, table, manifest)
        columns = exported.column_names
        rows = [tuple(_plain(v) for v in row.values()) for row in exported.to_pylist()]
        current = gold_rows(conn, table, columns)
        compared += max(len(rows), len(current))
        diff = multiset_difference(rows, current)
        mismatches += len(diff)
        examples += [
            f"export {manifest['build']} {table} {side.replace('left', 'export').replace('right', 'gold')}: {row}"
            for side, row in diff[:10]
        ]
    return mismatches, compared, examples


# --- the run ---------------------------------------------------------------------------------


def plan_faults(rng: random.Random, cycles: int, rate: float, minimum: int) -> list[str | None]:
    """Which fault hits which cycle: every kind at least once when there is room, then random."""
    plan: list[str | None] = [
        rng.choice(FAULT_KINDS) if rng.random() < rate else None for _ in range(cycles)
    ]
    kinds = list(FAULT_KINDS)
    rng.shuffle(kinds)
    for kind in [k for k in kinds if k not in plan]:
        # a slot that is free, or whose kind occurs more than once
        spare = [i for i, f in enumerate(plan) if f is None or plan.count(f) > 1]
        if spare:
            plan[rng.choice(spare)] = kind
    empty = [i for i, f in enumerate(plan) if f is None]
    while sum(f is not None for f in plan) < min(minimum, cycles) and empty:
        plan[empty.pop()] = rng.choice(FAULT_KINDS)
    return plan


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="platform-soak-")).resolve()
    for variable in PORT_VARIABLES:  # beside a `make dev` on the default ports
        os.environ.setdefault(variable, str(free_port()))
    config = StackConfig.from_env(state, users=args.users, entries=args.entries)
    rng = random.Random(args.seed)
    plan = plan_faults(rng, args.cycles, args.fault_rate, args.min_faults)
    say(f"seed {args.seed}: {args.cycles} cycles, faults planned {plan}; state in {state}")
    stack = Stack(config)
    result: dict[str, Any] = {}
    examples: list[str] = []
    with stop_on_signals():
        try:
            stack.start()
            soak = Soak(stack, args.seed, args.fault_rate, args.changes)
            since = time.time() - 1
            soak.launch(INGEST_JOB, INGESTION.name)  # the initial load
            soak.wait_quiet(
                since, args.cycle_timeout * 2, settle=0, downstream=(TRANSFORMATION.name,)
            )
            owed: list[str] = []  # faults that missed their cycle, made up in a free one
            for number, planned in enumerate(plan, start=1):
                fault = planned or (owed.pop(0) if owed else None)
                if soak.cycle(number, fault, args.cycle_timeout) and fault:
                    soak.tally.faults[fault] += 1
                elif fault:
                    soak.tally.missed[fault] += 1
                    owed.append(fault)
            soak.catch_up(args.cycle_timeout)
            soak.record_runs(soak.runs_since(since))  # runs still going when a cycle ended
            result, examples = compare_all(stack, soak)
            result = {
                "cycles": args.cycles,
                "seed": args.seed,
                "faults": dict(sorted(soak.tally.faults.items())),
                "faults_missed": dict(sorted(soak.tally.missed.items())),
                "changes": dict(soak.tally.changes),
                "runs": dict(sorted(soak.tally.runs.items())),
                **result,
            }
        except StopRequested as request:
            say(f"{request} received: stopping")
            raise SystemExit(130) from None
        finally:
            stack.stop()
            if not args.state_dir and not args.keep_state:
                import shutil

                shutil.rmtree(state, ignore_errors=True)
    for line in examples[:40]:
        say(f"mismatch: {line}")
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def compare_all(stack: Stack, soak: Soak) -> tuple[dict[str, Any], list[str]]:
    warehouse_url = _url(os.environ, os.environ[settings.WAREHOUSE_DB])
    admin_url = _url(os.environ, "postgres")
    examples: list[str] = []
    say("comparing raw with the upstream")
    with psycopg.connect(warehouse_url) as conn:
        raw, raw_rows, found = compare_raw(conn, soak.api.url)
        examples += found
        users = sorted(upstream_rows(soak.api.url, "users")) + sorted(soak.deleted_users)
        (as_of,) = conn.execute(
            "SELECT max(event_timestamp) FROM gold.user_journal_features"
        ).fetchone() or (None,)
        say("comparing Redis (the feature server) with gold")
        online, online_rows, found = compare_online(
            conn, stack.feature_server_url, users, soak.deleted_users
        )
        examples += found
        say("comparing the exports with gold")
        exports, export_rows, found = compare_exports(conn, os.environ["EXPORT_URI"])
        examples += found
    say(f"comparing gold with a --full-refresh build as of {as_of} ({REFRESH_DATABASE})")
    with tempfile.TemporaryDirectory(prefix="soak-dbt-") as work:
        refresh_url = full_refresh(admin_url, warehouse_url, as_of, Path(work))
        gold, gold_rows_compared, found = compare_gold(warehouse_url, refresh_url)
    examples += found
    return {
        "rows_compared": raw_rows + gold_rows_compared + online_rows + export_rows,
        "rows_compared_by_layer": {
            "raw": raw_rows,
            "gold": gold_rows_compared,
            "online": online_rows,
            "exports": export_rows,
        },
        "raw_mismatches": raw,
        "gold_mismatches": gold,
        "online_mismatches": online,
        "export_mismatches": exports,
        "as_of": as_of.isoformat() if as_of else None,
    }, examples


def _url(env: Any, database: str) -> str:
    return (
        f"postgresql://{env.get(settings.POSTGRES_USER, 'platform')}:"
        f"{env[settings.POSTGRES_PASSWORD]}@127.0.0.1:{env[settings.POSTGRES_PORT]}/{database}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--fault-rate", type=float, default=0.6)
    parser.add_argument("--min-faults", type=int, default=10)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--entries", type=int, default=9_000)
    parser.add_argument("--changes", type=int, default=30, help="new entries per cycle")
    parser.add_argument("--cycle-timeout", type=float, default=240)
    parser.add_argument("--state-dir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--keep-state", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = run_soak(args)
    except StackError as error:
        print(f"[soak] error: {error}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(result, sort_keys=True, default=str), flush=True)
    mismatches = sum(result[k] for k in result if k.endswith("_mismatches"))
    return 0 if mismatches == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
