"""``make demo``: the pipeline through the real instance, then one line of JSON.

Only ingestion is launched by hand (through the webserver's GraphQL API, as a user would);
the downstream locations must follow by themselves through declarative automation. The runs
stay in the stack's Postgres, so ``make dev`` shows them in the UI afterwards.

Each location may report its part of the summary: a module ``<package>.demo_summary`` with a
``summary() -> dict`` function, called with the stack's environment in place.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster_graphql import DagsterGraphQLClient
from data_platform.locations import INGESTION, LOCATIONS, CodeLocation

from data_platform_dev.stack.cli import Stack, StackConfig
from data_platform_dev.stack.processes import (
    StackError,
    StopRequested,
    raise_if_stop_requested,
    stop_on_signals,
)

LAUNCHED_JOB = "ingest_journal_app_job"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
ASSET_NODES = """
query { assetNodes { assetKey { path } repository { location { name } } } }
"""


_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[demo +{time.monotonic() - _STARTED:5.1f}s] {message}", flush=True)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def wait_for_automation(
    instance: DagsterInstance,
    locations: list[CodeLocation],
    since: float,
    timeout: float,
    settle: float = 15.0,
) -> None:
    """Wait until automation has run every downstream location and gone quiet.

    A downstream run may start before its upstream run ends (dbt's gold models finish before
    the exports in the same run), so every run created after ``since`` counts. Done when
    each location has a finished run, none is still going, and no new run appeared for
    ``settle`` seconds (a few automation ticks).
    """
    names = {loc.name for loc in locations}
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        raise_if_stop_requested()
        runs = [
            run
            for run in instance.get_runs(RunsFilter(created_after=_utc(since)))
            if run.remote_job_origin is not None and run.remote_job_origin.location_name in names
        ]
        for run in sorted(runs, key=lambda r: r.run_id):
            location = run.remote_job_origin.location_name  # type: ignore[union-attr]
            if seen.get(run.run_id) != run.status.value:
                if run.run_id not in seen:
                    quiet_since = time.monotonic()
                seen[run.run_id] = run.status.value
                say(f"{location}: run {run.run_id[:8]} {run.status.value} (started by automation)")
            if run.status in {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}:
                raise StackError(
                    f"run {run.run_id} in {location} ended {run.status.value}; see it in the UI "
                    f"(make dev) or the logs under {instance.root_directory}"
                )
        finished = {
            r.remote_job_origin.location_name  # type: ignore[union-attr]
            for r in runs
            if r.status == DagsterRunStatus.SUCCESS
        }
        busy = any(r.status not in FINISHED for r in runs)
        if finished == names and not busy and time.monotonic() - quiet_since >= settle:
            return
        time.sleep(1)
    missing = sorted(
        names - {r.remote_job_origin.location_name for r in runs if r.remote_job_origin}
    )
    raise StackError(
        f"automation did not finish within {timeout:.0f} s; no run yet in {missing or 'none'}: "
        "are the automation sensors running? (UI -> Automation)"
    )


def locations_with_assets(client: DagsterGraphQLClient) -> set[str]:
    result = client._execute(ASSET_NODES)
    return {node["repository"]["location"]["name"] for node in result["assetNodes"]}


def summaries() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for location in LOCATIONS:
        try:
            module = importlib.import_module(f"{location.package}.demo_summary")
        except ModuleNotFoundError as error:
            if error.name == f"{location.package}.demo_summary":
                continue
            raise
        merged.update(module.summary())
    return merged


def run_demo(config: StackConfig, timeout: float = 600) -> int:
    stack = Stack(config)
    started = time.monotonic()
    with stop_on_signals():
        try:
            stack.start()
            instance = DagsterInstance.get()
            client = DagsterGraphQLClient("127.0.0.1", port_number=config.webserver_port)
            downstream = [
                loc
                for loc in config.locations
                if loc != INGESTION and loc.name in locations_with_assets(client)
            ]
            launched_at = time.time()
            run_id = client.submit_job_execution(
                LAUNCHED_JOB,
                repository_location_name=INGESTION.name,
                repository_name="__repository__",
            )
            say(
                f"ingestion: launched {LAUNCHED_JOB} as run {run_id[:8]} (only this run is launched by hand)"
            )
            since = _wait_for_run(instance, run_id, timeout)
            say(f"ingestion: run {run_id[:8]} succeeded in {since - launched_at:.1f} s")
            wait_for_automation(instance, downstream, launched_at, timeout)
            summary = {**summaries(), "seconds": round(time.monotonic() - started, 1)}
        except StopRequested as request:
            say(f"{request} received: stopping")
            return 130
        except StackError as error:
            print(f"[demo] error: {error}", file=sys.stderr, flush=True)
            return 1
        finally:
            stack.stop()
    print(json.dumps(summary, sort_keys=True, default=str), flush=True)
    return 0


def _wait_for_run(instance: DagsterInstance, run_id: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        raise_if_stop_requested()
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status != status:
            status = run.status
            say(f"ingestion: run {run_id[:8]} {status.value}")
        if run is not None and run.status == DagsterRunStatus.SUCCESS:
            return _end_time(instance, run_id)
        if run is not None and run.status in FINISHED:
            raise StackError(
                f"ingestion run {run_id} ended {run.status.value}; see `make dev` UI or {instance.root_directory}"
            )
        time.sleep(0.5)
    raise StackError(f"ingestion run {run_id} did not finish within {timeout:.0f} s")


def _end_time(instance: DagsterInstance, run_id: str) -> float:
    record = instance.get_run_record_by_id(run_id)
    return record.end_time if record is not None and record.end_time else time.time()
