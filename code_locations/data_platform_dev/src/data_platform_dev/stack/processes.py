"""Supervised child processes for the local stack: start, wait until ready, stop cleanly.

Every child gets its own process group, so stopping it also stops what it spawned (a code
server's gRPC subprocess, a run's subprocess, Postgres' backends), and a Ctrl-C in the
terminal reaches only the supervisor, which then stops the children in reverse order.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class StackError(RuntimeError):
    """Something the local stack needs is missing or in the way; the message says what to do."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_free_port(port: int, what: str, env_var: str) -> None:
    if not port_is_free(port):
        raise StackError(
            f"port {port} for {what} is already in use. Stop whatever listens there "
            f"(`ss -ltnp 'sport = :{port}'` shows it; a stack left running stops with "
            f"`make stop`), or pick another port with {env_var}=<port>."
        )


def free_port() -> int:
    """A TCP port that nothing listens on right now (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_until(
    ready: Callable[[], bool],
    what: str,
    timeout: float,
    process: ManagedProcess | None = None,
    interval: float = 0.1,
) -> None:
    """Poll ``ready`` until it holds; fail early, with the log tail, if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.exited():
            raise StackError(
                f"{what} exited with code {process.returncode()} while starting; "
                f"last lines of {process.log_path}:\n{process.log_tail()}"
            )
        try:
            if ready():
                return
        except StackError:
            raise  # the probe found a failure that waiting will not fix
        except Exception:  # noqa: BLE001 - a probe that errors is simply not ready yet
            pass
        time.sleep(interval)
    tail = f"; last lines of {process.log_path}:\n{process.log_tail()}" if process else ""
    raise StackError(f"{what} was not ready after {timeout:.0f} s{tail}")


@dataclass
class ManagedProcess:
    """One child of the supervisor, logging to its own file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        uid: int | None = None
        gid: int | None = None
        groups: list[int] | None = None
        if self.user is not None:
            # drop root's groups too: a gid of 0 would apply root's group bits, not "others"
            entry = pwd.getpwnam(self.user)
            uid, gid, groups = entry.pw_uid, entry.pw_gid, []
        try:
            self._popen = subprocess.Popen(
                list(self.argv),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        except FileNotFoundError as error:
            raise StackError(
                f"cannot start {self.name}: {self.argv[0]} not found. Run `make install` "
                "to install the project's tools into .venv."
            ) from error
        return self

    @property
    def pid(self) -> int:
        assert self._popen is not None, f"{self.name} was never started"
        return self._popen.pid

    def exited(self) -> bool:
        return self._popen is not None and self._popen.poll() is not None

    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """Signal the whole process group, wait, then kill whatever is left."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, self.stop_signal)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait(5)
        # children that outlived their parent still belong to the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
