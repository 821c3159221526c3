"""The analyzer's feature server: Feast's HTTP app with only its read endpoints.

``feast serve`` also serves /push, /write-to-online-store, /materialize and
/materialize-incremental without authentication. Writes to Redis belong to the Dagster asset
alone, so this server drops every route but the reads; binding 127.0.0.1 (the default) keeps
even those on the machine.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from fastapi import FastAPI
from feast import FeatureStore

READ_ENDPOINTS = frozenset({"/get-online-features", "/health"})
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6566


def read_only_app(store: FeatureStore, registry_ttl_seconds: int = 5) -> FastAPI:
    """Feast's feature server app, keeping only ``READ_ENDPOINTS``."""
    from feast.feature_server import get_app

    app = get_app(store, registry_ttl_sec=registry_ttl_seconds)
    app.router.routes = [
        route for route in app.router.routes if getattr(route, "path", None) in READ_ENDPOINTS
    ]
    return app


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    from feature_store.feast_config import open_feature_store

    parser = argparse.ArgumentParser(prog="python -m feature_store.serving", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--repo-path", default=None, help="default: $FEAST_REPO_PATH or feast_repo")
    parser.add_argument(
        "--registry-ttl", type=int, default=5, help="seconds between registry refreshes"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    store = open_feature_store(args.repo_path)
    app = read_only_app(store, args.registry_ttl)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info")
