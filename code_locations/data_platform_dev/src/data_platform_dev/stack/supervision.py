"""Restart crashed processes the way Kubernetes restarts a crashed container.

A code server, the feature server, the dev upstream, the daemon or the webserver that exits
is restarted after a back-off that doubles (1 s, 2 s, 4 s ...), while everything else keeps
running; more than ``limit`` crashes within ``window`` seconds is a crash loop, which a person
must look at, so the stack stops with the reason. Postgres and Redis are not restarted: every
other process holds connections to them, so the stack says which one died and stops cleanly.

The back-off is a small loop rather than tenacity or stamina: those retry one blocking call,
while this supervisor watches several processes from one loop and must keep serving Ctrl-C
and the other processes while one waits out its delay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from data_platform_dev.stack.processes import ManagedProcess, StackError


@dataclass
class RestartPolicy:
    """Kubernetes' CrashLoopBackOff in small: delays double from ``first_delay``."""

    limit: int = 5
    window: float = 600.0
    first_delay: float = 1.0
    crashes: list[float] = field(default_factory=list)

    def next_attempt(self, now: float) -> tuple[int, float] | None:
        """The attempt number and its delay after a crash at ``now``; None beyond the budget."""
        self.crashes = [t for t in self.crashes if now - t < self.window] + [now]
        attempt = len(self.crashes)
        if attempt > self.limit:
            return None
        return attempt, self.first_delay * 2 ** (attempt - 1)


class State(Enum):
    RUNNING = "running"
    STARTING = "starting"
    WAITING = "waiting to restart"


@dataclass
class Service:
    """One supervised process: how to start it again and how to tell that it serves."""

    name: str
    process: ManagedProcess
    spawn: Callable[[], ManagedProcess] | None  # None: not restarted (Postgres, Redis)
    ready: Callable[[], bool] = lambda: True
    ready_timeout: float = 300.0
    on_ready: Callable[[], None] | None = None  # after a restart (reload the UI's location)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    state: State = State.RUNNING
    restart_at: float = 0.0
    started_at: float = 0.0
    exit_reason: str = ""


def _is_ready(service: Service) -> bool:
    try:
        return service.ready()
    except StackError:
        raise  # the probe found a failure that waiting will not fix (an import error)
    except Exception:  # noqa: BLE001 - a probe that errors is simply not ready yet
        return False


def supervise_once(
    services: list[Service], say: Callable[[str], None], now: float | None = None
) -> bool:
    """One look at every service: notice crashes, restart when due, report recoveries.

    Returns True when a process was started (its pid must be recorded). Raises StackError
    when a store died or a service crashed more often than its policy allows.
    """
    now = time.monotonic() if now is None else now
    spawned = False
    for service in services:
        if service.state is State.WAITING:
            if now >= service.restart_at:
                assert service.spawn is not None
                service.process = service.spawn()
                service.state, service.started_at = State.STARTING, now
                spawned = True
            continue
        crashed = service.process.exited()
        if crashed:
            service.exit_reason = f"exited with code {service.process.returncode()}"
        elif service.state is State.STARTING:
            if _is_ready(service):
                service.state = State.RUNNING
                say(f"{service.name} is back ({now - service.started_at:.1f} s after its restart)")
                if service.on_ready is not None:
                    service.on_ready()
                continue
            if now - service.started_at > service.ready_timeout:
                crashed = True
                service.exit_reason = f"not ready {service.ready_timeout:.0f} s after a restart"
        if not crashed:
            continue
        service.process.stop()  # what it left in its process group goes too, as with a pod
        log = f"last lines of {service.process.log_path}:\n{service.process.log_tail()}"
        if service.spawn is None:
            raise StackError(
                f"{service.name} {service.exit_reason}; every other process depends on it, so "
                f"the stack stops now. `make dev` starts it again with the same data; {log}"
            )
        attempt = service.policy.next_attempt(now)
        if attempt is None:
            raise StackError(
                f"{service.name} {service.exit_reason}: crashed more than "
                f"{service.policy.limit} times within {service.policy.window:.0f} s, "
                f"so the stack stops; {log}"
            )
        number, delay = attempt
        say(
            f"restarting {service.name} ({service.exit_reason}), "
            f"attempt {number}/{service.policy.limit} in {delay:.1f} s"
        )
        service.state, service.restart_at = State.WAITING, now + delay
    return spawned
