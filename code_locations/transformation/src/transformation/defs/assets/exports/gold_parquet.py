"""The gold tables as Parquet builds with a manifest, written after each dbt run."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
from data_platform.definitions import eager_until_requested
from data_platform.resources import PostgresResource

from transformation.gold_exports import MANIFEST, build_id, export_build
from transformation.gold_tables import GOLD_TABLES
from transformation.object_store import ExportStore


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["exports", table],
            deps=[["gold", table]],
            group_name="exports",
            kinds={"parquet", "s3"},
            description=f"gold.{table} as Parquet: gold/{table}/build=<id>/part-*.parquet "
            f"under $EXPORT_URI, named by {MANIFEST} (read that first).",
            automation_condition=eager_until_requested(),
        )
        for table in GOLD_TABLES
    ],
    name="gold_parquet_exports",
    can_subset=False,  # one build holds both tables, from one snapshot
)
def gold_parquet_exports(
    context: dg.AssetExecutionContext, postgres: PostgresResource, export_store: ExportStore
) -> Iterator[dg.MaterializeResult]:
    """Both tables as one immutable build, then the manifest; expired builds deleted."""
    build = build_id(datetime.now(UTC), context.run_id)
    done = export_build(
        postgres, export_store, build, timedelta(hours=export_store.retention_hours)
    )
    context.log.info(
        f"export build {build}: "
        + ", ".join(f"gold.{t} {done.rows(t)} rows" for t in GOLD_TABLES)
        + f"; {len(done.expired)} expired objects deleted"
    )
    manifest_uri = export_store.object_uri(MANIFEST)
    for table in GOLD_TABLES:
        objects = done.manifest["tables"][table]["objects"]
        yield dg.MaterializeResult(
            asset_key=dg.AssetKey(["exports", table]),
            metadata={
                "manifest": dg.MetadataValue.path(manifest_uri),
                "build": build,
                "objects": dg.MetadataValue.json([export_store.object_uri(o) for o in objects]),
                "rows": done.rows(table),
                "expired_objects": len(done.expired),
            },
        )
