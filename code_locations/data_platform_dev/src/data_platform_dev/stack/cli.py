"""The local stack: Postgres, Redis, the dev upstream, one code server per location, the
webserver and the daemon, supervised by this one program.

    python -m data_platform_dev.stack dev    # everything up; Ctrl-C stops every process
    python -m data_platform_dev.stack demo   # headless: run the pipeline, print one JSON line
    python -m data_platform_dev.stack stop   # stop a stack whose terminal was killed

All state (databases, AOF, Dagster home, logs, generated passwords) lives under --state-dir.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from data_platform import settings
from data_platform.locations import FEATURE_STORE, LOCATIONS, CodeLocation, by_name

from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.instance import write_instance, write_workspace
from data_platform_dev.stack.postgres import SUPERUSER, LocalPostgres
from data_platform_dev.stack.processes import (
    ManagedProcess,
    StackError,
    port_answers,
    require_free_port,
    wait_until,
)
from data_platform_dev.stack.redis import LocalRedis
from data_platform_dev.stack.servers import platform_environment


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

    @classmethod
    def from_env(cls, state_dir: Path, **overrides: Any) -> StackConfig:
        return cls(
            state_dir=state_dir.resolve(),
            postgres_port=_port("PLATFORM_POSTGRES_PORT", cls.postgres_port),
            redis_port=_port("PLATFORM_REDIS_PORT", cls.redis_port),
            journal_api_port=_port("PLATFORM_JOURNAL_API_PORT", cls.journal_api_port),
            webserver_port=_port("PLATFORM_WEBSERVER_PORT", cls.webserver_port),
            feature_server_port=_port("PLATFORM_FEATURE_SERVER_PORT", cls.feature_server_port),
            **overrides,
        )

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
    def pidfile(self) -> Path:
        return self.state_dir / "stack.pid"

    def ports(self) -> list[tuple[int, str, str]]:
        return [
            (self.postgres_port, "Postgres", "PLATFORM_POSTGRES_PORT"),
            (self.redis_port, "Redis", "PLATFORM_REDIS_PORT"),
            (self.journal_api_port, "the journal API (dev upstream)", "PLATFORM_JOURNAL_API_PORT"),
            *[
                (loc.port, f"the {loc.name} code server", "(locations.py)")
                for loc in self.locations
            ],
            (self.webserver_port, "the Dagster webserver", "PLATFORM_WEBSERVER_PORT"),
            (self.feature_server_port, "the Feast feature server", "PLATFORM_FEATURE_SERVER_PORT"),
        ]


def _stored_secrets(path: Path) -> dict[str, str]:
    """Passwords generated on first start and kept in the state dir (never in git)."""
    if path.exists():
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    values = {
        settings.POSTGRES_PASSWORD: secrets.token_hex(16),
        settings.REDIS_PASSWORD: secrets.token_hex(16),
        "JOURNAL_API_ADMIN_TOKEN": secrets.token_hex(16),  # the dev upstream's admin endpoints
    }
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
    processes: list[ManagedProcess] = field(default_factory=list)
    postgres: LocalPostgres | None = None
    redis: LocalRedis | None = None
    journal_api: JournalApiProcess | None = None
    env: dict[str, str] = field(default_factory=dict)

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
            "DBT_TARGET": "local",
            "EXPORT_URI": str(c.state_dir / "exports"),
            "PYTHONUNBUFFERED": "1",
        }

    def _check_not_running(self) -> None:
        pid = _read_pid(self.config.pidfile)
        if pid is not None and _alive(pid):
            raise StackError(
                f"a stack is already running from {self.config.state_dir} (pid {pid}); "
                "stop it with `make stop` (or Ctrl-C in its terminal)."
            )
        for port, what, variable in self.config.ports():
            require_free_port(port, what, variable)

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(
            name, argv, self.config.logs / f"{name}.log", env=self.env, cwd=self.config.state_dir
        ).start()
        self.processes.append(process)
        self._record_pids()
        return process

    def _record_pids(self) -> None:
        groups = [p.pid for p in self.processes]
        for server in (self.postgres, self.redis, self.journal_api):
            if (
                server is not None
                and server.process is not None
                and server.process.pid not in groups
            ):
                groups.append(server.process.pid)
        (self.config.state_dir / "process-groups.json").write_text(json.dumps(groups))

    def start(self, webserver: bool = True) -> Stack:
        c = self.config
        c.state_dir.mkdir(parents=True, exist_ok=True)
        self._check_not_running()
        c.pidfile.write_text(str(os.getpid()))
        passwords = _stored_secrets(c.state_dir / "secrets.env")
        self.env = self.environment(passwords)
        os.environ.update(self.env)  # the demo reads the instance and the stores in-process

        started = time.monotonic()
        self.say(f"state in {c.state_dir}, logs in {c.logs}")
        self.postgres = LocalPostgres(
            c.state_dir / "postgres",
            c.postgres_port,
            passwords[settings.POSTGRES_PASSWORD],
            c.logs / "postgres.log",
        ).start()
        self.say(
            f"Postgres on 127.0.0.1:{c.postgres_port} (databases warehouse, dagster, feast_registry)"
        )
        self.redis = LocalRedis(
            c.state_dir / "redis",
            c.redis_port,
            passwords[settings.REDIS_PASSWORD],
            c.logs / "redis.log",
        ).start()
        self.say(f"Redis on 127.0.0.1:{c.redis_port} (append-only persistence)")
        self.journal_api = JournalApiProcess(
            c.journal_api_port,
            c.logs / "journal-api.log",
            {"users": c.users, "entries": c.entries, "end": _upstream_end(c.state_dir)},
            **({"admin_token": t} if (t := passwords.get("JOURNAL_API_ADMIN_TOKEN")) else {}),
        ).start()
        self._record_pids()
        self.say(
            f"journal API (dev upstream) on {self.journal_api.url} ({c.users} users, {c.entries} entries)"
        )

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
            )
        write_instance(c.dagster_home, c.postgres_port, SUPERUSER)
        write_workspace(c.workspace, c.locations)
        servers = [
            (loc, self._spawn(f"code-server-{loc.name}", self._code_server_argv(loc)))
            for loc in c.locations
        ]
        for loc, process in servers:
            wait_until(
                lambda loc=loc: _location_loaded(loc), f"code server {loc.name}", 300, process
            )
            self.say(f"code location {loc.name} serving on 127.0.0.1:{loc.port}")
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
            )
            wait_until(lambda: _http_ok(f"{self.ui_url}/server_info"), "dagster-webserver", 180, ui)
            self.say(f"Dagster UI on {self.ui_url}")
        self.say(f"stack up in {time.monotonic() - started:.1f} s")
        return self

    @property
    def feature_server_url(self) -> str:
        return f"http://127.0.0.1:{self.config.feature_server_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.config.webserver_port}"

    def _code_server_argv(self, location: CodeLocation) -> list[str]:
        return [
            _bin("dagster"), "code-server", "start",
            "-h", "127.0.0.1", "-p", str(location.port),
            "-m", location.module, "--location-name", location.name,
        ]  # fmt: skip

    def check_children(self) -> None:
        for process in self.processes:
            if process.exited():
                raise StackError(
                    f"{process.name} exited with code {process.returncode()}; "
                    f"last lines of {process.log_path}:\n{process.log_tail()}"
                )

    def stop(self) -> None:
        """Stop everything, newest first; the stores last so in-flight runs can finish writing."""
        for process in reversed(self.processes):
            process.stop()
        for server in (self.journal_api, self.redis, self.postgres):
            if server is not None:
                server.stop()
        leftovers = [port for port, _, _ in self.config.ports() if port_answers(port)]
        with contextlib.suppress(FileNotFoundError):
            self.config.pidfile.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.config.state_dir / "process-groups.json").unlink()
        if leftovers:
            self.say(f"warning: ports still answering after stop: {leftovers}")
        else:
            self.say("stopped; no port of the stack is in use")


def _location_loaded(location: CodeLocation) -> bool:
    """True once the server answers and its code imported; an import error fails at once."""
    from dagster._core.errors import DagsterUserCodeUnreachableError
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value
    from dagster_shared.error import SerializableErrorInfo

    client = DagsterGrpcClient(port=location.port, host="127.0.0.1")
    try:
        raw = client.list_repositories()
    except DagsterUserCodeUnreachableError:
        return False
    result = deserialize_value(raw) if isinstance(raw, str) else raw
    if isinstance(result, SerializableErrorInfo):
        raise StackError(f"code location {location.name} failed to load:\n{result.to_string()}")
    return True


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt, so every exit path stops the children."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def stop_running_stack(state_dir: Path) -> None:
    """Stop a stack from another terminal: ask its supervisor, then clean up what is left."""
    pidfile = state_dir / "stack.pid"
    pid = _read_pid(pidfile)
    if pid is not None and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    groups_file = state_dir / "process-groups.json"
    if groups_file.exists():  # the supervisor died without cleaning up: stop its children
        for group in json.loads(groups_file.read_text()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGINT)
        time.sleep(2)
        for group in json.loads(groups_file.read_text()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        groups_file.unlink()
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    print(f"[stack] nothing of the stack in {state_dir} is running any more", flush=True)


def run_dev(config: StackConfig) -> int:
    stack = Stack(config)
    with interruptible():
        try:
            stack.start()
            stack.say("Ctrl-C stops everything")
            while True:
                stack.check_children()
                time.sleep(1)
        except KeyboardInterrupt:
            stack.say("stopping...")
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
