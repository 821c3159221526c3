"""Start the development upstream as its own process, and drive its admin endpoints."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from data_platform_dev.stack.processes import ManagedProcess, wait_until


@dataclass
class JournalApiProcess:
    port: int
    log_path: Path
    options: dict[str, Any]
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> JournalApiProcess:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def spawn(self) -> ManagedProcess:
        """Start the server without waiting (the stack's supervisor restarts it this way)."""
        argv = [sys.executable, "-m", "data_platform_dev.journal_api", "--port", str(self.port)]
        for name, value in self.options.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        self.process = ManagedProcess("journal-api", argv, self.log_path).start()
        return self.process

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(self.healthy, "journal API", timeout, self.process)

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=1).status_code == 200

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=5).raise_for_status().json()  # type: ignore[no-any-return]

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/admin/faults", json=faults, timeout=5)
        return response.raise_for_status().json()  # type: ignore[no-any-return]

    def advance(self, **changes: int) -> dict[str, int]:
        response = httpx.post(f"{self.url}/admin/advance", json=changes, timeout=30)
        return response.raise_for_status().json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
