"""The local stack: Postgres, Redis, the dev upstream, one code server per location, the
webserver and the daemon, supervised by this one program.

    python -m data_platform_dev.stack dev    # everything up; Ctrl-C stops every process
    python -m data_platform_dev.stack demo   # headless: run the pipeline, print one JSON line
    python -m data_platform_dev.stack stop   # stop a stack whose terminal was killed

All state (databases, AOF, Dagster home, logs, generated passwords, the record of which
processes the stack started) lives under --state-dir. A crashed process is restarted with
back-off, as Kubernetes restarts a container (supervision.py).

Postgres has the Kubernetes roles (the stores chart's team-roles.sh): each code server (and so
each of its runs) and the feature server connect as their team's role, the webserver, the
daemon and every instance connection as the instance's role; only this supervisor (the demo's
summaries, the soak's comparisons) holds the superuser's password.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from data_platform import settings
from data_platform.locations import FEATURE_STORE, LOCATIONS, CodeLocation, by_name

from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.instance import create_storage, write_instance, write_workspace
from data_platform_dev.stack.postgres import INSTANCE_TEAM, LOCATION_TEAMS, TEAMS, LocalPostgres
from data_platform_dev.stack.processes import (
    ManagedProcess,
    ProcessRecord,
    StackError,
    StopRequested,
    port_answers,
    raise_if_stop_requested,
    require_free_port,
    stop_all,
    stop_on_signals,
    wait_until,
)
from data_platform_dev.stack.redis import LocalRedis
from data_platform_dev.stack.servers import platform_environment
from data_platform_dev.stack.supervision import Service, supervise_once


def _port(variable: str, default: int) -> int:
    value = os.environ.get(variable, str(default))
    if not value.isdigit():
        raise StackError(f"{variable}={value!r} is not a port number")
    return int(value)


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state and which ports it takes (each overridable by env)."""

    state_dir: Path
    postgres_port: int = 15432
    redis_port: int = 16379
    journal_api_port: int = 18000
    webserver_port: int = 3000
    feature_server_port: int = 6566
    users: int = 1_000
    entries: int = 30_000
    locations: tuple[CodeLocation, ...] = LOCATIONS
    # location name -> port; a location missing here serves on its registry port
    code_server_ports: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_env(cls, state_dir: Path, **overrides: Any) -> StackConfig:
        return cls(
            state_dir=state_dir.resolve(),
            postgres_port=_port("PLATFORM_POSTGRES_PORT", cls.postgres_port),
            redis_port=_port("PLATFORM_REDIS_PORT", cls.redis_port),
            journal_api_port=_port("PLATFORM_JOURNAL_API_PORT", cls.journal_api_port),
            webserver_port=_port("PLATFORM_WEBSERVER_PORT", cls.webserver_port),
            feature_server_port=_port("PLATFORM_FEATURE_SERVER_PORT", cls.feature_server_port),
            code_server_ports={loc.name: _port(loc.port_variable, loc.port) for loc in LOCATIONS},
            **overrides,
        )

    def code_server_port(self, location: CodeLocation) -> int:
        return self.code_server_ports.get(location.name, location.port)

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def dagster_home(self) -> Path:
        return self.state_dir / "dagster_home"

    @property
    def workspace(self) -> Path:
        return self.state_dir / "workspace.yaml"

    @property
    def records(self) -> Path:
        return self.state_dir / RECORDS

    def ports(self) -> list[tuple[int, str, str]]:
        return [
            (self.postgres_port, "Postgres", "PLATFORM_POSTGRES_PORT"),
            (self.redis_port, "Redis", "PLATFORM_REDIS_PORT"),
            (self.journal_api_port, "the journal API (dev upstream)", "PLATFORM_JOURNAL_API_PORT"),
            *[
                (self.code_server_port(loc), f"the {loc.name} code server", loc.port_variable)
                for loc in self.locations
            ],
            (self.webserver_port, "the Dagster webserver", "PLATFORM_WEBSERVER_PORT"),
            (self.feature_server_port, "the Feast feature server", "PLATFORM_FEATURE_SERVER_PORT"),
        ]


# where secrets.env keeps each team role's password (the instance's under its own variable)
ROLE_PASSWORD_KEYS = {
    INSTANCE_TEAM: settings.DAGSTER_PG_PASSWORD,
    "ingestion": "INGESTION_POSTGRES_PASSWORD",
    "transformation": "TRANSFORMATION_POSTGRES_PASSWORD",
    "featureStore": "FEATURE_STORE_POSTGRES_PASSWORD",
}


def _stored_secrets(path: Path) -> dict[str, str]:
    """Passwords generated on first start and kept in the state dir (never in git); one
    missing from an older state dir (a team role's) is generated and added."""
    values: dict[str, str] = {}
    if path.exists():
        lines = path.read_text().splitlines()
        values = dict(line.split("=", 1) for line in lines if "=" in line)
    wanted = [
        settings.POSTGRES_PASSWORD,  # the superuser's: this supervisor only
        settings.REDIS_PASSWORD,
        "JOURNAL_API_ADMIN_TOKEN",  # the dev upstream's admin endpoints
        *ROLE_PASSWORD_KEYS.values(),
    ]
    missing = {key: secrets.token_hex(16) for key in wanted if key not in values}
    if missing:
        values |= missing
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return values


def _upstream_end(state_dir: Path) -> str:
    """When the dev upstream's data ends: the first start's moment, kept for later starts.

    The synthetic data is a function of this moment, so a restarted stack serves the same rows
    (a re-run loads nothing new) instead of a dataset shifted by the minutes in between.
    """
    path = state_dir / "journal-api-end.txt"
    if not path.exists():
        path.write_text(datetime.now(UTC).replace(microsecond=0).isoformat() + "\n")
    return path.read_text().strip()


def _bin(name: str) -> str:
    """A console script of this environment (dagster, dagster-webserver, feast...)."""
    return str(Path(sys.executable).parent / name)


@dataclass
class Stack:
    config: StackConfig
    services: list[Service] = field(default_factory=list)
    postgres: LocalPostgres | None = None
    redis: LocalRedis | None = None
    journal_api: JournalApiProcess | None = None
    env: dict[str, str] = field(default_factory=dict)
    # team (postgres.teamRoles key) -> (role, password)
    roles: dict[str, tuple[str, str]] = field(default_factory=dict)
    stopped: bool = False

    def say(self, message: str) -> None:
        print(f"[stack] {message}", flush=True)

    def environment(self, passwords: dict[str, str]) -> dict[str, str]:
        """What every process of the stack sees: the same variables Kubernetes sets."""
        c = self.config
        return {
            **os.environ,
            "DAGSTER_HOME": str(c.dagster_home),
            **platform_environment(
                c.postgres_port,
                passwords[settings.POSTGRES_PASSWORD],
                c.redis_port,
                passwords[settings.REDIS_PASSWORD],
                f"http://127.0.0.1:{c.journal_api_port}",
            ),
            settings.DAGSTER_PG_PASSWORD: passwords[ROLE_PASSWORD_KEYS[INSTANCE_TEAM]],
            "DBT_TARGET": "local",
            "EXPORT_URI": str(c.state_dir / "exports"),
            "PYTHONUNBUFFERED": "1",
        }

    def team_environment(self, team: str | None) -> dict[str, str]:
        """A child's environment: its team's Postgres role (a code server, and so its runs; the
        feature server), or no warehouse credentials (webserver, daemon): never the superuser."""
        env = dict(self.env)
        del env[settings.POSTGRES_USER], env[settings.POSTGRES_PASSWORD]
        if team is not None:
            role, password = self.roles[team]
            env |= {settings.POSTGRES_USER: role, settings.POSTGRES_PASSWORD: password}
        return env

    def _check_not_running(self) -> None:
        supervisor = next(
            (r for r in read_records(self.config.records) if r.name == SUPERVISOR), None
        )
        if supervisor is not None and supervisor.is_running():
            raise StackError(
                f"a stack is already running from {self.config.state_dir} (pid "
                f"{supervisor.pid}); stop it with `make stop` (or Ctrl-C in its terminal)."
            )
        for port, what, variable in self.config.ports():
            require_free_port(port, what, variable)

    def _process(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        process = ManagedProcess(
            name, argv, self.config.logs / f"{name}.log", env=env, cwd=self.config.state_dir
        ).start()
        self._record_processes(process)
        return process

    def _supervise(
        self,
        process: ManagedProcess,
        spawn: Callable[[], ManagedProcess] | None,
        ready: Callable[[], bool] = lambda: True,
        on_ready: Callable[[], None] | None = None,
        name: str | None = None,
    ) -> ManagedProcess:
        service = Service(name or process.name, process, spawn, ready, on_ready=on_ready)
        self.services.append(service)
        self._record_processes()
        return process

    def _spawn(
        self,
        name: str,
        argv: list[str],
        ready: Callable[[], bool] = lambda: True,
        on_ready: Callable[[], None] | None = None,
        team: str | None = None,
    ) -> ManagedProcess:
        """Start a process that is restarted when it crashes, with the same command line; it
        connects to Postgres as ``team``'s role (none: the instance's role only)."""
        env = self.team_environment(team)
        return self._supervise(
            self._process(name, argv, env), lambda: self._process(name, argv, env), ready, on_ready
        )

    def _record_processes(self, *starting: ManagedProcess) -> None:
        """Who `make stop` may signal: the supervisor and every child, with start time."""
        processes = [
            *[server.process for server in (self.postgres, self.redis) if server is not None],
            *[service.process for service in self.services],
            *starting,
        ]
        records = {os.getpid(): ProcessRecord.of(SUPERVISOR, os.getpid())}
        records |= {p.pid: p.record() for p in processes if p is not None and not p.exited()}
        write_records(self.config.records, [r for r in records.values() if r is not None])

    def start(self, webserver: bool = True) -> Stack:
        c = self.config
        c.state_dir.mkdir(parents=True, exist_ok=True)
        self._check_not_running()
        self._record_processes()
        passwords = _stored_secrets(c.state_dir / "secrets.env")
        self.env = self.environment(passwords)
        os.environ.update(self.env)  # the demo reads the instance and the stores in-process

        started = time.monotonic()
        self.say(f"state in {c.state_dir}, logs in {c.logs}")
        # assigned before start(): a Ctrl-C while it starts must still stop what it spawned
        self.postgres = LocalPostgres(
            c.state_dir / "postgres",
            c.postgres_port,
            passwords[settings.POSTGRES_PASSWORD],
            c.logs / "postgres.log",
        )
        self._supervise(self.postgres.start().process, None, name="Postgres")  # type: ignore[arg-type]
        role_passwords = {team: passwords[ROLE_PASSWORD_KEYS[team]] for team in TEAMS}
        names = self.postgres.create_team_roles(role_passwords)
        self.roles = {team: (names[team], role_passwords[team]) for team in TEAMS}
        self.say(
            f"Postgres on 127.0.0.1:{c.postgres_port} (databases warehouse, dagster, "
            f"feast_registry; roles {', '.join(names.values())})"
        )
        self.redis = LocalRedis(
            c.state_dir / "redis",
            c.redis_port,
            passwords[settings.REDIS_PASSWORD],
            c.logs / "redis.log",
        )
        self._supervise(self.redis.start().process, None, name="Redis")  # type: ignore[arg-type]
        self.say(f"Redis on 127.0.0.1:{c.redis_port} (append-only persistence)")
        api = self.journal_api = JournalApiProcess(
            c.journal_api_port,
            c.logs / "journal-api.log",
            {"users": c.users, "entries": c.entries, "end": _upstream_end(c.state_dir)},
            **({"admin_token": t} if (t := passwords.get("JOURNAL_API_ADMIN_TOKEN")) else {}),
        )
        api.spawn()
        self._record_processes()
        api.wait_ready()
        self._supervise(api.process, api.spawn, api.healthy)  # type: ignore[arg-type]
        self.say(f"journal API (dev upstream) on {api.url} ({c.users} users, {c.entries} entries)")

        feature_server = None
        if FEATURE_STORE in c.locations:  # Feast's import is slow: let it start meanwhile
            feature_server = self._spawn(
                "feature-server",
                [
                    sys.executable,
                    "-m",
                    "feature_store.serving",
                    "--port",
                    str(c.feature_server_port),
                ],
                ready=lambda: _http_ok(f"{self.feature_server_url}/health"),
                team=LOCATION_TEAMS[FEATURE_STORE.name],
            )
        write_instance(c.dagster_home, c.postgres_port, self.roles[INSTANCE_TEAM][0])
        create_storage(c.dagster_home)  # once, before the code servers race to create it
        write_workspace(c.workspace, c.locations, c.code_server_ports)
        servers = [(loc, self._spawn_code_server(loc)) for loc in c.locations]
        for loc, process in servers:
            port = c.code_server_port(loc)
            wait_until(
                functools.partial(_location_loaded, loc.name, port),
                f"code server {loc.name}",
                300,
                process,
            )
            self.say(f"code location {loc.name} serving on 127.0.0.1:{port}")
        if feature_server is not None:
            wait_until(
                lambda: _http_ok(f"{self.feature_server_url}/health"),
                "feature server",
                180,
                feature_server,
            )
            self.say(f"Feast feature server (read-only) on {self.feature_server_url}")
        # the daemon starts only once every location answers, so no run meets a missing location
        self._spawn("dagster-daemon", [_bin("dagster-daemon"), "run", "-w", str(c.workspace)])
        if webserver:
            ui = self._spawn(
                "dagster-webserver",
                [
                    _bin("dagster-webserver"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(c.webserver_port),
                    "-w",
                    str(c.workspace),
                ],
                ready=lambda: _http_ok(f"{self.ui_url}/server_info"),
            )
            wait_until(lambda: _http_ok(f"{self.ui_url}/server_info"), "dagster-webserver", 180, ui)
            self.say(f"Dagster UI on {self.ui_url}")
        self._record_processes()
        self.say(f"stack up in {time.monotonic() - started:.1f} s")
        return self

    @property
    def feature_server_url(self) -> str:
        return f"http://127.0.0.1:{self.config.feature_server_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.config.webserver_port}"

    def _spawn_code_server(self, location: CodeLocation) -> ManagedProcess:
        port = self.config.code_server_port(location)
        return self._spawn(
            f"code-server-{location.name}",
            self._code_server_argv(location),
            ready=lambda: _location_loaded(location.name, port),
            on_ready=lambda: self._reload_in_ui(location.name),
            team=LOCATION_TEAMS[location.name],
        )

    def _code_server_argv(self, location: CodeLocation) -> list[str]:
        return code_server_argv(location, self.config.code_server_port(location))

    def _reload_in_ui(self, location: str) -> None:
        """What the UI's Reload button does, so the location shows LOADED at once.

        The webserver and the daemon also notice the new server id on their own within seconds.
        """
        if not any(s.name == "dagster-webserver" for s in self.services):
            return
        try:
            entry = httpx.post(
                f"{self.ui_url}/graphql",
                json={"query": RELOAD_LOCATION, "variables": {"name": location}},
                timeout=15,  # short: a Ctrl-C waits for this call
            ).json()["data"]["reloadRepositoryLocation"]
            self.say(f"Dagster UI reloaded code location {location}: {entry.get('loadStatus')}")
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as error:
            self.say(f"warning: the UI did not reload {location} ({error}); use its Reload button")

    def supervise(self, interval: float = 0.2) -> None:
        """Watch the children until a stop is requested or the stack cannot go on."""
        while True:
            raise_if_stop_requested()
            if supervise_once(self.services, self.say):
                self._record_processes()
            time.sleep(interval)

    def stop(self) -> None:
        """Stop everything (idempotent): the apps together, then the stores, so in-flight
        writes end before Postgres goes."""
        if self.stopped:
            return
        self.stopped = True
        apps = [service.process for service in self.services if service.spawn is not None]
        if self.journal_api is not None and self.journal_api.process is not None:
            apps.append(self.journal_api.process)  # interrupted before it was supervised
        stop_all(reversed(apps), timeout=15)  # the same process twice is stopped once
        stores = [server.process for server in (self.redis, self.postgres) if server is not None]
        stop_all([p for p in stores if p is not None], timeout=30)
        leftovers = [port for port, _, _ in self.config.ports() if port_answers(port)]
        with contextlib.suppress(FileNotFoundError):
            self.config.records.unlink()
        if leftovers:
            self.say(f"warning: ports still answering after stop: {leftovers}")
        else:
            self.say("stopped; no port of the stack is in use")


RELOAD_LOCATION = """
mutation Reload($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry { loadStatus }
  }
}
"""


def _location_loaded(name: str, port: int) -> bool:
    """True once the server answers and its code imported; an import error fails at once."""
    from dagster._core.errors import DagsterUserCodeUnreachableError
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value
    from dagster_shared.error import SerializableErrorInfo

    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    try:
        raw = client.list_repositories()
    except DagsterUserCodeUnreachableError:
        return False
    result = deserialize_value(raw) if isinstance(raw, str) else raw
    if isinstance(result, SerializableErrorInfo):
        raise StackError(f"code location {name} failed to load:\n{result.to_string()}")
    return True


def code_server_argv(location: CodeLocation, port: int | str) -> list[str]:
    """How the stack starts a location's code server, as the charts do (bench-load times it).

    ``dagster api grpc``, one process: ``dagster code-server start`` adds a proxy that imports
    Dagster first and then the code in a subprocess, about 1.5 s more per start, so a UI
    Reload can re-import the code. Without it, code that fails to load ends the process (the
    supervisor, like Kubernetes, restarts it) and a code change needs a restart.
    """
    return [
        _bin("dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(port),
        "-m", location.module, "--location-name", location.name,
    ]  # fmt: skip


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


SUPERVISOR = "supervisor"
RECORDS = "processes.json"
# pid files of earlier versions: no start time to check a pid against, so never signalled
LEGACY_PID_FILES = ("stack.pid", "process-groups.json")


def read_records(path: Path) -> list[ProcessRecord]:
    try:
        return [ProcessRecord.from_json(item) for item in json.loads(path.read_text())]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as error:
        raise StackError(
            f"{path} is not a process record of the stack ({error}); delete it if no stack "
            "runs from this directory"
        ) from error


def write_records(path: Path, records: list[ProcessRecord]) -> None:
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps([r.to_json() for r in records], indent=1))
    scratch.replace(path)  # atomic: `make stop` never reads half a file


def stop_running_stack(state_dir: Path, timeout: float = 60.0) -> None:
    """Stop a stack from another terminal: ask its supervisor, then clean up what is left.

    A pid is signalled only while it is still the process the stack started (same start
    time and command line); a stale record never reaches an unrelated process.
    """

    def say(message: str) -> None:
        print(f"[stack] {message}", flush=True)

    for name in LEGACY_PID_FILES:
        legacy = state_dir / name
        if legacy.exists():
            say(f"{legacy} records no start time to check its pids against: nothing signalled")
            legacy.unlink()
    records_path = state_dir / RECORDS
    records = read_records(records_path)
    supervisor = next((r for r in records if r.name == SUPERVISOR), None)
    if supervisor is not None and supervisor.is_running():
        os.kill(supervisor.pid, signal.SIGTERM)  # it stops its children and removes the file
        deadline = time.monotonic() + timeout
        while supervisor.is_running() and time.monotonic() < deadline:
            time.sleep(0.2)
        records = read_records(records_path)
    signalled = []
    for record in reversed(records):
        # a leader gone with its group still there: the pid cannot have been reused meanwhile
        orphans = ProcessRecord.of(record.name, record.pid) is None and record.group_members()
        if record.name != SUPERVISOR and (record.is_running() or orphans):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGINT)  # Postgres: fast shutdown; the rest: stop
            signalled.append(record)
        elif (stranger := record.stranger()) is not None:
            say(f"pid {record.pid} ({record.name}) is now another process, left alone: {stranger}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(r.group_members() for r in signalled):
        time.sleep(0.2)
    for record in signalled:
        if record.group_members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        records_path.unlink()
    say(f"nothing of the stack in {state_dir} is running any more")


def run_dev(config: StackConfig) -> int:
    stack = Stack(config)
    with stop_on_signals():
        try:
            stack.start()
            stack.say("Ctrl-C stops everything; crashed processes are restarted")
            stack.supervise()
        except StopRequested as request:
            stack.say(f"{request} received: stopping everything (further signals are ignored)")
        except StackError as error:
            print(f"[stack] error: {error}", file=sys.stderr, flush=True)
            return 1
        finally:
            stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["dev", "demo", "stop"])
    parser.add_argument("--state-dir", type=Path, default=Path(".platform"))
    parser.add_argument("--users", type=int, default=StackConfig.users)
    parser.add_argument("--entries", type=int, default=StackConfig.entries)
    parser.add_argument(
        "--locations",
        type=lambda names: tuple(by_name(n.strip()) for n in names.split(",")),
        default=LOCATIONS,
        help="comma-separated code locations to serve (default: all)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "stop":
            stop_running_stack(args.state_dir.resolve())
            return 0
        config = StackConfig.from_env(
            args.state_dir, users=args.users, entries=args.entries, locations=args.locations
        )
        if args.command == "dev":
            return run_dev(config)
        from data_platform_dev.stack.demo import run_demo

        return run_demo(config)
    except StackError as error:
        print(f"[stack] error: {error}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
