"""The local Dagster instance and workspace: the same shape as the Helm release, on a laptop.

Storage on Postgres (dagster-postgres), runs queued then launched as subprocesses of the
code servers, and a workspace.yaml that lists one gRPC server per code location, exactly as
the Helm chart's ``dagsterWebserver.workspace.servers`` does on Kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from data_platform.locations import CodeLocation
from data_platform.settings import DAGSTER_PG_PASSWORD


def instance_config(
    postgres_port: int, postgres_user: str, database: str = "dagster"
) -> dict[str, Any]:
    return {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": "127.0.0.1",
                    "port": postgres_port,
                    "username": postgres_user,
                    # the instance's own role, as the Helm chart's dagster.yaml
                    "password": {"env": DAGSTER_PG_PASSWORD},
                    "db_name": database,
                    "params": {"sslmode": "disable"},
                }
            }
        },
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            # a run queued while its code server restarts waits for it instead of failing
            "config": {
                "max_concurrent_runs": 4,
                "max_user_code_failure_retries": 3,
                "user_code_failure_retry_delay": 10,
                # a queued run waits at most a second for the daemon (default 5 s), and the
                # three locations' runs are launched side by side, not one after another
                "dequeue_interval_seconds": 1,
                "dequeue_use_threads": True,
                "dequeue_num_workers": 3,
            },
        },
        # sensors and automation of the three locations evaluated side by side: a slow tick
        # of one (dbt's automation) never delays the ingestion sensor's
        "sensors": {"use_threads": True, "num_workers": 4},
        "auto_materialize": {"use_threads": True, "num_workers": 3},
        "run_launcher": {"module": "dagster.core.launcher", "class": "DefaultRunLauncher"},
        "run_monitoring": {"enabled": True, "poll_interval_seconds": 15},
        "run_retries": {"enabled": True, "max_retries": 0},
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
    }


def workspace_config(
    locations: tuple[CodeLocation, ...], ports: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The gRPC servers to load; ``ports`` moves a location off its registry port."""
    ports = ports or {}
    return {
        "load_from": [
            {
                "grpc_server": {
                    "host": "127.0.0.1",
                    "port": ports.get(loc.name, loc.port),
                    "location_name": loc.name,
                }
            }
            for loc in locations
        ]
    }


def write_instance(dagster_home: Path, postgres_port: int, postgres_user: str) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    path.write_text(yaml.safe_dump(instance_config(postgres_port, postgres_user), sort_keys=False))
    return path


def write_workspace(
    path: Path, locations: tuple[CodeLocation, ...], ports: Mapping[str, int] | None = None
) -> Path:
    path.write_text(yaml.safe_dump(workspace_config(locations, ports), sort_keys=False))
    return path


def create_storage(dagster_home: Path) -> None:
    """Create the instance's tables once, before any Dagster process opens the instance.

    Every Dagster process creates missing tables when it opens a Postgres-backed instance, and
    the code servers start together: on a new database their CREATE TABLEs collided and one
    location failed to load ('type "run_tags" already exists'), seen on a first `make dev`.
    """
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))):
        pass
