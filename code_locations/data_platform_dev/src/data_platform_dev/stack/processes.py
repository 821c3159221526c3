"""Supervised child processes for the local stack: start, wait until ready, stop cleanly.

Every child gets its own process group, so stopping it also stops what it spawned (a code
server's gRPC subprocess, a run's subprocess, Postgres' backends), and a Ctrl-C in the
terminal reaches only the supervisor, which then stops the children in reverse order.

Signals only set a flag (``stop_on_signals``); the supervisor acts on it at its next check,
so no interrupt lands halfway through starting or stopping a process.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psutil


class StackError(RuntimeError):
    """Something the local stack needs is missing or in the way; the message says what to do."""


class StopRequested(Exception):
    """Ctrl-C, SIGTERM or SIGHUP asked the stack to stop."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_stop_signal: list[str] = []  # the first stop signal's name, once one arrived


def raise_if_stop_requested() -> None:
    if _stop_signal:
        raise StopRequested(_stop_signal[0])


def _record_stop_signal(signum: int, frame: FrameType | None) -> None:
    # no I/O here: the handler may run in the middle of a print or a lock
    if not _stop_signal:
        _stop_signal.append(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into a stop request that the supervisor checks.

    A terminal's Ctrl-C reaches make, `uv run` and the supervisor, and `uv run` forwards it
    once more: the second signal arrives while the stack stops. Raising from the handler would
    abort that stop halfway (or leave a just-spawned child unrecorded), so the handler only
    records the first signal and every later one is a no-op. Once a stop was requested the
    signals stay ignored after this block, until the process exits.
    """
    _stop_signal.clear()
    previous = {s: signal.signal(s, _record_stop_signal) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_IGN if _stop_signal else handler)


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
        raise_if_stop_requested()
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

    def signal_group(self, signum: int) -> None:
        if self._popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signum)

    def stop(self, timeout: float = 15.0) -> None:
        """Signal the whole process group, wait, then kill whatever is left (idempotent)."""
        stop_all([self], timeout)

    def record(self) -> ProcessRecord | None:
        """Who this child is, for `make stop` to recognise it later; None once it is gone."""
        return None if self._popen is None else ProcessRecord.of(self.name, self._popen.pid)

    def _finish(self) -> None:
        # children that outlived their parent still belong to the group
        self.signal_group(signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_all(processes: Iterable[ManagedProcess], timeout: float = 15.0) -> None:
    """Stop several children at once: signal every group, wait with one deadline, then kill.

    Stopping them one by one would add their shutdown times; together a Ctrl-C stays well
    within the 30 s a user waits.
    """
    processes = [p for p in processes if p._popen is not None]
    for process in processes:
        if process.returncode() is None:
            process.signal_group(process.stop_signal)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.returncode() is None for p in processes):
        time.sleep(0.05)
    for process in processes:
        if process.returncode() is None:
            process.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process._popen.wait(5)  # type: ignore[union-attr]
        process._finish()


@dataclass(frozen=True)
class ProcessRecord:
    """A process as `make stop` may signal it: the pid alone could name a stranger by now.

    The kernel reuses pids, so a pid file left by a killed stack can point at any process.
    Start time (from /proc/<pid>/stat, through psutil) and command line together say whether
    the pid still is the process the stack started.
    """

    name: str
    pid: int
    started: float
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, name: str, pid: int) -> ProcessRecord | None:
        try:
            process = psutil.Process(pid)
            return cls(name, pid, process.create_time(), tuple(process.cmdline()))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(data["name"], int(data["pid"]), float(data["started"]), tuple(data["cmdline"]))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "cmdline": list(self.cmdline)}

    def is_running(self) -> bool:
        """True when the pid is alive and is still this process (same start, same command)."""
        current = ProcessRecord.of(self.name, self.pid)
        return current is not None and current == self

    def stranger(self) -> str | None:
        """What now runs under this pid when it is not the recorded process, else None."""
        current = ProcessRecord.of(self.name, self.pid)
        if current is None or current == self:
            return None
        return " ".join(current.cmdline)[:120] or "(no command line)"

    def group_members(self) -> list[int]:
        """Live pids in the process group this process led (its children outlive it there)."""
        members = []
        for pid in psutil.pids():
            with contextlib.suppress(OSError, psutil.Error):
                if os.getpgid(pid) == self.pid and (
                    psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                ):
                    members.append(pid)
        return members
