"""dbt_analytics: every dbt model as a Dagster asset, every dbt test as an asset check."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from transformation.dbt_config import dbt_project
from transformation.manifest import ensure_manifest
from transformation.translator import warehouse_translator


@dbt_assets(
    manifest=ensure_manifest(dbt_project),
    project=dbt_project,
    dagster_dbt_translator=warehouse_translator(),
    name="dbt_analytics",
)
def dbt_analytics(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """`dbt build` of the selected models and tests; incremental models merge only new rows."""
    yield from dbt.cli(["build"], context=context).stream()
