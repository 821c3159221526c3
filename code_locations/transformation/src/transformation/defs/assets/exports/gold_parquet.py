"""The gold tables as Parquet objects, rewritten after each dbt run that changed them."""

from collections.abc import Iterator

import dagster as dg
from data_platform.resources import PostgresResource

from transformation.gold_tables import GOLD_TABLES, write_parquet
from transformation.object_store import ExportStore


def object_name(table: str) -> str:
    """A fixed name per table, so a rerun overwrites the previous export."""
    return f"gold/{table}.parquet"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["exports", table],
            deps=[["gold", table]],
            group_name="exports",
            kinds={"parquet", "s3"},
            description=f"gold.{table} as Parquet: {object_name(table)} under $EXPORT_URI.",
            automation_condition=dg.AutomationCondition.eager(),
        )
        for table in GOLD_TABLES
    ],
    name="gold_parquet_exports",
    can_subset=True,
)
def gold_parquet_exports(
    context: dg.AssetExecutionContext, postgres: PostgresResource, export_store: ExportStore
) -> Iterator[dg.MaterializeResult]:
    for key in sorted(context.selected_asset_keys):
        table = key.path[-1]
        with export_store.publishing(object_name(table)) as staged:
            rows = write_parquet(postgres, "gold", table, staged)
            size = staged.stat().st_size
        uri = export_store.object_uri(object_name(table))
        context.log.info(f"gold.{table}: {rows} rows, {size} bytes -> {uri}")
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={"uri": dg.MetadataValue.path(uri), "rows": rows, "bytes": size},
        )
