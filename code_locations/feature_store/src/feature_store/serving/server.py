"""The analyzer's feature server: Feast's HTTP app with only its read endpoints.

``feast serve`` also serves /push, /write-to-online-store, /materialize and
/materialize-incremental without authentication. Writes to Redis belong to the Dagster asset
alone, so this server drops every route but the reads; binding 127.0.0.1 (the default) keeps
even those on the machine. POST /get-online-features goes through ``read_path`` first: the
same answer from Feast's parts in fewer steps, Feast's handler for whatever it leaves.

Tuned for tail latency (the local stack and the chart start it with these defaults):
- workers: uvicorn processes (Feast's read path holds the GIL), by default one per whole CPU
  the process may use (its affinity and a container's CPU limit), at most
  ``MAX_DEFAULT_WORKERS``: each holds Feast (``WORKER_MEMORY_MIB``); ``--workers`` or
  FEATURE_SERVER_WORKERS set the number (the chart sets it to its CPU limit);
- registry refresh every 10 s, not 5: each refresh rebuilds the registry from Postgres in the
  serving process, a pause the requests behind it pay. Reads need the registry only for
  feature view definitions (a deploy changes them, a materialization never), but a server
  started before the first apply serves nothing until its next refresh; below
  feature_store.yaml's cache_ttl_seconds (60), so no request ever refreshes it inline;
- start-up objects frozen out of the garbage collector (``gc.freeze``): Feast's imports leave
  millions of objects that every full collection would walk in the middle of a request;
- keep-alive 75 s, above the usual client pool idle time, so clients rarely reconnect.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from feast import FeatureStore

if TYPE_CHECKING:
    from feature_store.serving.read_path import LeanOnlineFeatures

READ_ENDPOINTS = frozenset({"/get-online-features", "/health"})
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6566
DEFAULT_REGISTRY_TTL_SECONDS = 10
KEEP_ALIVE_SECONDS = 75
MAX_DEFAULT_WORKERS = 4
# resident memory of one worker process (Feast, its registry, the app), measured; with more
# than one worker, uvicorn's supervisor process also holds Feast (it checks the config)
WORKER_MEMORY_MIB = 240
# a container's CPU limit: cgroup v2 "<quota> <period>" (or "max"), cgroup v1 two files
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def read_only_app(
    store: FeatureStore, registry_ttl_seconds: int = DEFAULT_REGISTRY_TTL_SECONDS
) -> FastAPI:
    """Feast's feature server app, keeping only ``READ_ENDPOINTS``."""
    from feast.feature_server import get_app

    app = get_app(store, registry_ttl_sec=registry_ttl_seconds)
    app.router.routes = [
        route for route in app.router.routes if getattr(route, "path", None) in READ_ENDPOINTS
    ]
    return app


def serving_app(
    store: FeatureStore, registry_ttl_seconds: int = DEFAULT_REGISTRY_TTL_SECONDS
) -> LeanOnlineFeatures:
    """What the server runs: the read-only app behind the lean read path."""
    from feature_store.serving.read_path import LeanOnlineFeatures

    return LeanOnlineFeatures(read_only_app(store, registry_ttl_seconds), store)


def create_app() -> LeanOnlineFeatures:
    """The app of one worker process (uvicorn's factory), from the server's command line:
    multiprocessing hands ``sys.argv`` to every worker it spawns."""
    from feature_store.feast_config import open_feature_store

    args = parse_args()
    store = open_feature_store(args.repo_path)
    app = serving_app(store, args.registry_ttl)
    gc.collect()
    gc.freeze()  # what start-up built lives as long as the process: never scan it again
    return app


def uvicorn_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "factory": True,
        "loop": "uvloop",
        "http": "httptools",
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "access_log": False,
        "log_level": "info",
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m feature_store.serving", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--repo-path", default=None, help="default: $FEAST_REPO_PATH or feast_repo")
    parser.add_argument(
        "--registry-ttl",
        type=int,
        default=DEFAULT_REGISTRY_TTL_SECONDS,
        help="seconds between registry refreshes",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes (default: $FEATURE_SERVER_WORKERS, else one per CPU it may use, "
        f"at most {MAX_DEFAULT_WORKERS})",
    )
    args = parser.parse_args(argv)
    if args.workers is None:
        configured = os.environ.get("FEATURE_SERVER_WORKERS")
        args.workers = int(configured) if configured else default_workers()
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return args


def default_workers(
    cpu_max: Path = CGROUP_CPU_MAX, cpu_v1: Path = CGROUP_V1_CPU, cap: int = MAX_DEFAULT_WORKERS
) -> int:
    """One worker per whole CPU this process may use: the CPUs it may run on, fewer under a
    container's CPU limit (a pod limited to 1 CPU on a 64-core node gets 1); between 1 and
    ``cap``, since every worker holds its own Feast."""
    cpus = len(os.sched_getaffinity(0))
    limit = _cgroup_cpu_limit(cpu_max, cpu_v1)
    if limit is not None:
        cpus = min(cpus, int(limit))
    return max(1, min(cpus, cap))


def _cgroup_cpu_limit(cpu_max: Path, cpu_v1: Path) -> float | None:
    """CPUs of the cgroup's quota, or None without one (or outside a cgroup)."""
    try:
        if cpu_max.exists():
            quota, period = cpu_max.read_text().split()[:2]
        else:
            quota = (cpu_v1 / "cpu.cfs_quota_us").read_text().strip()
            period = (cpu_v1 / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        return None


def main() -> None:
    """Serve (the command line is read again by each worker's ``create_app``)."""
    import uvicorn

    from feature_store.feast_config import load_repo_config

    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    load_repo_config(args.repo_path)  # a bad configuration fails here, once, not per worker
    uvicorn.run("feature_store.serving.server:create_app", **uvicorn_settings(args))
