"""dbt_analytics: every dbt model as a Dagster asset, every dbt test as an asset check."""

import json
from datetime import UTC, datetime

import dagster as dg
from dagster_dbt import dbt_assets
from data_platform.resources import PostgresResource

from transformation.build_lock import dbt_build_lock
from transformation.dbt_config import WarehouseDbtCli, dbt_project
from transformation.manifest import ensure_manifest
from transformation.translator import warehouse_translator


@dbt_assets(
    manifest=ensure_manifest(dbt_project),
    project=dbt_project,
    dagster_dbt_translator=warehouse_translator(),
    name="dbt_analytics",
)
def dbt_analytics(
    context: dg.AssetExecutionContext, dbt: WarehouseDbtCli, postgres: PostgresResource
):
    """`dbt build` of the selected models and tests, one build at a time per warehouse, in
    this process on the prepared manifest.

    Both gold tables describe one moment, the build's start (var as_of), taken once the
    build holds the lock. Tests read the rows written since the lock was taken
    (var changed_since): every row after a first build or a full rewrite, the changed ones
    after an incremental build.
    """
    dbt.prepare(postgres.database)  # dbt and the manifest load before the lock, not under it
    with dbt_build_lock(postgres, on_wait=context.log.info) as locked_at:
        build_vars = {
            "as_of": datetime.now(UTC).isoformat(),
            "changed_since": locked_at.isoformat(),
        }
        yield from dbt.run_in_process(
            ["build", "--vars", json.dumps(build_vars)], database=postgres.database, context=context
        )
