"""dbt_analytics: every dbt model as a Dagster asset, every dbt test as an asset check."""

import json
from datetime import UTC, datetime

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets
from data_platform.resources import PostgresResource

from transformation.build_lock import dbt_build_lock
from transformation.dbt_config import dbt_project
from transformation.manifest import ensure_manifest
from transformation.translator import warehouse_translator


@dbt_assets(
    manifest=ensure_manifest(dbt_project),
    project=dbt_project,
    dagster_dbt_translator=warehouse_translator(),
    name="dbt_analytics",
)
def dbt_analytics(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, postgres: PostgresResource
):
    """`dbt build` of the selected models and tests, one build at a time per warehouse.

    Both gold tables describe one moment, the build's start (var as_of), taken once the
    build holds the lock.
    """
    with dbt_build_lock(postgres, on_wait=context.log.info):
        as_of = datetime.now(UTC).isoformat()
        yield from dbt.cli(
            ["build", "--vars", json.dumps({"as_of": as_of})], context=context
        ).stream()
