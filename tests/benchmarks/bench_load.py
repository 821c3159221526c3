"""Benchmark: how fast a code location loads, and how fast a launched run starts its first step.

Not a test: it prints figures. It starts the local stack (every port a free one, state in a
temporary directory) and waits until automation is quiet. Then, per location:

- load: a second code server of the location, started with the stack's own command
  (stack/cli.py's ``code_server_argv``), on a free port; the seconds until it lists its
  repositories (``_location_loaded``, stricter than a health check). The median of
  ``--repeats`` starts, one at a time. For comparison both of Dagster's commands are timed
  (``dagster code-server start``: a proxy that imports the code in a subprocess, so it can
  reload it; ``dagster api grpc``: one process) and a bare ``import`` of the module.
- first step: one job launched through the webserver's GraphQL API (launchRun), with the
  seconds from the launch to its first STEP_START event, split into the phases of the run's
  events (queued until the daemon dequeues it, launch, run worker start-up, first step). A
  step that later fails still counts as started. The next launch waits for quiet.

The last line is JSON with ``load_s`` and ``first_step_s``, each keyed by location.

    python -m tests.benchmarks.bench_load [--repeats 3]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil
from dagster import DagsterEventType, DagsterInstance
from dagster_graphql import DagsterGraphQLClient
from data_platform.locations import CodeLocation
from data_platform_dev.stack.bench import (
    phases,
    run_events,
    running_stack,
    stack_arguments,
    timestamped,
    wait_for_quiet,
)
from data_platform_dev.stack.cli import Stack, _bin, _location_loaded, code_server_argv
from data_platform_dev.stack.processes import ManagedProcess, free_port, raise_if_stop_requested

JOBS = {
    "ingestion": "ingest_journal_app_job",
    "transformation": "rebuild_gold_job",
    "feature_store": "materialize_online_features_job",
}
FINISHED = {DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children: unlike wall time, it hardly
    grows when other work shares the cores."""
    process = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(recursive=True)])


def time_until_loaded(
    stack: Stack, location: CodeLocation, argv: list[str], cpu: list[float] | None = None
) -> float:
    """Seconds from spawning ``argv`` until the server lists the location's repositories;
    the CPU seconds spent by then are appended to ``cpu``."""
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]
    log = stack.config.logs / f"bench-load-{location.name}.log"
    started = time.monotonic()
    process = ManagedProcess(
        f"bench-{location.name}", argv, log, env=stack.env, cwd=stack.config.state_dir
    ).start()
    try:
        while not _location_loaded(location.name, port):
            raise_if_stop_requested()
            if process.exited():
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{' '.join(argv)} exited:\n{tail}")
            if time.monotonic() - started > 120:
                raise TimeoutError(f"{location.name} did not load within 120 s; see {log}")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        if cpu is not None:
            cpu.append(cpu_seconds(process.pid))
        return elapsed
    finally:
        process.stop()


def time_import(stack: Stack, location: CodeLocation) -> float:
    """A fresh interpreter importing the definitions module (Python start-up included)."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", f"import {location.module}"],
        env=stack.env,
        cwd=stack.config.state_dir,
        check=True,
    )
    return time.monotonic() - started


def load_figures(stack: Stack, repeats: int, say: Any) -> dict[str, dict[str, float]]:
    """Per location: the stack's own command (``load``), both of Dagster's server commands
    beside it, and a bare import; medians of ``repeats`` starts, one at a time."""
    figures: dict[str, dict[str, float]] = {}
    for location in stack.config.locations:
        pointer = ["-m", location.module, "--location-name", location.name]
        commands = {
            "load": code_server_argv(location, "{port}"),
            "code_server": [
                _bin("dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", "{port}",
                *pointer,
            ],
            "api_grpc": [
                _bin("dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", "{port}", *pointer,
            ],
        }  # fmt: skip
        cpu: list[float] = []
        timed = {
            name: [
                time_until_loaded(stack, location, argv, cpu if name == "load" else None)
                for _ in range(repeats)
            ]
            for name, argv in commands.items()
        }
        timed["import"] = [time_import(stack, location) for _ in range(repeats)]
        timed["load_cpu"] = cpu
        figures[location.name] = {k: round(statistics.median(v), 2) for k, v in timed.items()}
        f = figures[location.name]
        say(
            f"load {location.name:15s} as the stack starts it {f['load']:5.2f} s"
            f" ({f['load_cpu']:4.2f} s CPU)"
            f"   code-server start {f['code_server']:5.2f} s   api grpc {f['api_grpc']:5.2f} s"
            f"   import of {location.module} {f['import']:5.2f} s"
        )
    return figures


def first_step(
    instance: DagsterInstance, client: DagsterGraphQLClient, location: str, job: str, say: Any
) -> float | None:
    launched = time.time()
    run_id = client.submit_job_execution(
        job, repository_location_name=location, repository_name="__repository__"
    )
    deadline = time.monotonic() + 300
    events = run_events(instance, run_id)
    while DagsterEventType.STEP_START not in events and not FINISHED & set(events):
        raise_if_stop_requested()
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
        events = run_events(instance, run_id)
    step = events.get(DagsterEventType.STEP_START)
    say(
        f"first step {location:15s} {job:34s} "
        + (f"{step - launched:5.2f} s" if step else "no step started")
        + "  ("
        + ", ".join(f"{name} +{seconds:.2f}" for name, seconds in phases(events, launched))
        + ")"
    )
    return None if step is None else round(step - launched, 2)


def main() -> None:
    parser = stack_arguments(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    say = timestamped("load")

    with running_stack("bench-load-", users=args.users, entries=args.entries) as stack:
        instance = DagsterInstance.get()
        client = DagsterGraphQLClient("127.0.0.1", port_number=stack.config.webserver_port)
        wait_for_quiet(instance, 10, 600)
        say("automation quiet; launching one job per location")
        steps: dict[str, float | None] = {}
        for location in stack.config.locations:
            wait_for_quiet(instance, 5, 600)
            job = JOBS[location.name]
            steps[location.name] = first_step(instance, client, location.name, job, say)
        wait_for_quiet(instance, 5, 600)
        say("timing new code servers")
        load = load_figures(stack, args.repeats, say)
    result = {
        "load_s": {name: figures["load"] for name, figures in load.items()},
        "load_command": " ".join(code_server_argv(stack.config.locations[0], "PORT")[1:4]),
        "load_cpu_s": {name: figures["load_cpu"] for name, figures in load.items()},
        "load_code_server_start_s": {n: figures["code_server"] for n, figures in load.items()},
        "load_api_grpc_s": {name: figures["api_grpc"] for name, figures in load.items()},
        "import_s": {name: figures["import"] for name, figures in load.items()},
        "first_step_s": steps,
    }
    print(json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
