"""The local stack for benchmarks and tests: every port a free one, state in a temporary
directory, so it runs beside a `make dev` on the default ports; and what its runs spent."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from data_platform.locations import LOCATIONS

from data_platform_dev.stack.cli import Stack, StackConfig
from data_platform_dev.stack.processes import free_port, raise_if_stop_requested, stop_on_signals

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
# a run's way from the launch to its first step, event by event
PHASES = [
    (DagsterEventType.RUN_ENQUEUED, "queued"),
    (DagsterEventType.RUN_DEQUEUED, "dequeued"),
    (DagsterEventType.RUN_STARTING, "launched"),
    (DagsterEventType.RUN_START, "worker up"),
    (DagsterEventType.STEP_START, "first step"),
]


def stack_environment(state: Path, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Every port of the stack on a free one, the state in ``state``."""
    variables = [
        "PLATFORM_POSTGRES_PORT",
        "PLATFORM_REDIS_PORT",
        "PLATFORM_JOURNAL_API_PORT",
        "PLATFORM_WEBSERVER_PORT",
        "PLATFORM_FEATURE_SERVER_PORT",
        *[loc.port_variable for loc in LOCATIONS],
    ]
    # as from a terminal: under `make test` a nested make would otherwise print
    # "make[1]: Leaving directory" after the demo's JSON line
    inherited = {k: v for k, v in base.items() if k not in {"MAKELEVEL", "MAKEFLAGS", "MFLAGS"}}
    return {**inherited, **{v: str(free_port()) for v in variables}, "STATE_DIR": str(state)}


@contextmanager
def running_stack(prefix: str, webserver: bool = True, **config: Any) -> Iterator[Stack]:
    """The whole stack in this process, on free ports; stopped (and its state removed) after."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        os.environ.update(stack_environment(Path(tmp)))
        stack = Stack(StackConfig.from_env(Path(tmp), **config))
        with stop_on_signals():
            try:
                yield stack.start(webserver=webserver)
            finally:
                stack.stop()


def wait_for_quiet(instance: DagsterInstance, seconds: float, timeout: float) -> None:
    """Until no run has been queued or running for ``seconds`` (automation settled)."""
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        raise_if_stop_requested()
        if instance.get_runs(RunsFilter(statuses=IN_FLIGHT), limit=1):
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= seconds:
            return
        time.sleep(1)


def run_events(instance: DagsterInstance, run_id: str) -> dict[DagsterEventType, float]:
    """The first timestamp of each event type of a run."""
    seen: dict[DagsterEventType, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is not None and event.event_type not in seen:
            seen[event.event_type] = record.timestamp
    return seen


def phases(events: Mapping[DagsterEventType, float], since: float) -> list[tuple[str, float]]:
    """(phase, seconds since the previous one) from ``since`` to the first step."""
    result, previous = [], since
    for event_type, name in PHASES:
        if event_type in events:
            result.append((name, events[event_type] - previous))
            previous = events[event_type]
    return result


def stack_arguments(description: str | None) -> argparse.ArgumentParser:
    """The options every stack benchmark takes: the dev upstream's size."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--entries", type=int, default=30_000)
    return parser


def timestamped(name: str) -> Callable[[str], None]:
    """A print that says how long the benchmark has been running."""
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{name} +{time.monotonic() - started:6.1f}s] {message}", flush=True)

    return say
