"""Where configuration comes from: environment variables, read when resources are built.

The environment differs between a laptop (the local stack sets these for every process it
starts) and Kubernetes (a ConfigMap and a Secret per release set them). Nothing here reads the
environment at import time: ``EnvVar`` is resolved by Dagster when a run builds the resource.
"""

from __future__ import annotations

import dagster as dg

from data_platform.resources.postgres import PostgresResource
from data_platform.resources.redis import RedisResource

# The platform's environment contract (Kubernetes values and the local stack set exactly these).
POSTGRES_HOST = "POSTGRES_HOST"
POSTGRES_PORT = "POSTGRES_PORT"
POSTGRES_USER = "POSTGRES_USER"
POSTGRES_PASSWORD = "POSTGRES_PASSWORD"
WAREHOUSE_DB = "WAREHOUSE_DB"
FEAST_REGISTRY_DB = "FEAST_REGISTRY_DB"
FEAST_REPO_PATH = "FEAST_REPO_PATH"  # optional: the feast_repo directory (default: the checkout's)
REDIS_HOST = "REDIS_HOST"
REDIS_PORT = "REDIS_PORT"
REDIS_PASSWORD = "REDIS_PASSWORD"
JOURNAL_API_URL = "JOURNAL_API_URL"
JOURNAL_API_TOKEN = "JOURNAL_API_TOKEN"  # optional: a bearer token for the upstream (a Secret)
EXPORT_URI = "EXPORT_URI"  # transformation: s3://bucket/prefix or a folder for the gold exports
EXPORT_S3_ENDPOINT_URL = "EXPORT_S3_ENDPOINT_URL"  # optional: an S3-compatible endpoint
# The Dagster instance's own Postgres role's password (the official chart's variable): read by
# the instance config (dagster.yaml) in every Dagster process, never by a location's code.
DAGSTER_PG_PASSWORD = "DAGSTER_PG_PASSWORD"

# The only optional variables: the code has a default when they are unset. Every other variable
# a location reads is required, and its releases (dev and production, code server and run pod)
# must set it (tests/kubernetes/test_k8s_environment_contract.py).
OPTIONAL_VARIABLES = frozenset({FEAST_REPO_PATH, EXPORT_S3_ENDPOINT_URL, JOURNAL_API_TOKEN})

SECRET_VARIABLES = (POSTGRES_PASSWORD, REDIS_PASSWORD, JOURNAL_API_TOKEN)


def warehouse(location: str) -> PostgresResource:
    """The warehouse database (schemas raw, staging, gold), tagged with the calling location."""
    return PostgresResource(
        host=dg.EnvVar(POSTGRES_HOST),
        port=dg.EnvVar.int(POSTGRES_PORT),
        user=dg.EnvVar(POSTGRES_USER),
        password=dg.EnvVar(POSTGRES_PASSWORD),
        database=dg.EnvVar(WAREHOUSE_DB),
        application_name=f"dagster-{location}",
    )


def online_store(location: str) -> RedisResource:
    """The Redis online store, its connections named after the calling location."""
    return RedisResource(
        host=dg.EnvVar(REDIS_HOST),
        port=dg.EnvVar.int(REDIS_PORT),
        password=dg.EnvVar(REDIS_PASSWORD),
        client_name=f"dagster-{location}",
    )
