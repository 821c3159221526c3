"""Start the development upstream as its own process, and drive its admin endpoints."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
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
    # admin endpoints need this token (the stack keeps its own with the generated secrets)
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    read_token: str | None = field(default=None, repr=False)  # if set, /api/v1/* needs it

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
        env = {**os.environ, "JOURNAL_API_ADMIN_TOKEN": self.admin_token}
        env.pop("JOURNAL_API_TOKEN", None)
        if self.read_token:
            env["JOURNAL_API_TOKEN"] = self.read_token
        self.process = ManagedProcess("journal-api", argv, self.log_path, env=env).start()
        return self.process

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(self.healthy, "journal API", timeout, self.process)

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=1).status_code == 200

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=5).raise_for_status().json()  # type: ignore[no-any-return]

    def admin(self, action: str, body: dict[str, Any], timeout: float = 30) -> Any:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        response = httpx.post(
            f"{self.url}/admin/{action}", json=body, headers=headers, timeout=timeout
        )
        return response.raise_for_status().json()

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self.admin("faults", faults)  # type: ignore[no-any-return]

    def advance(self, **changes: int) -> dict[str, int]:
        return self.admin("advance", changes)  # type: ignore[no-any-return]

    def delete(self, entity: str, row_id: int) -> list[dict[str, Any]]:
        """Delete a user (and their entries) or an entry; the tombstones it made."""
        return self.admin("delete", {"entity": entity, "id": row_id})  # type: ignore[no-any-return]

    def move(
        self, entry_id: int, user_id: int | None = None, days: int = 0, late_seconds: int = 0
    ) -> dict[str, Any]:
        """An entry moved to another user and/or day, as a new version (``late_seconds``:
        stamped that far in the past, a late commit that can go behind its current stamp)."""
        body = {"id": entry_id, "days": days, **({"user_id": user_id} if user_id else {})}
        if late_seconds:
            body["late_seconds"] = late_seconds
        return self.admin("move", body)  # type: ignore[no-any-return]

    def restore(self, entity: str, row_id: int) -> dict[str, Any]:
        return self.admin("restore", {"entity": entity, "id": row_id})  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
