"""dbt_analytics: every dbt model as a Dagster asset, every dbt test as an asset check.

The specs are the ones ``@dbt_assets`` builds, stored beside the manifest (dbt_specs.py), so
that loading the location imports neither dbt nor dagster-dbt; the step imports them.
"""

from datetime import UTC, datetime

import dagster as dg
from data_platform.resources import PostgresResource

from transformation.build_lock import dbt_build_lock
from transformation.dbt_resource import WarehouseDbt, dbt_files
from transformation.dbt_specs import DBT_ASSETS_NAME, dbt_specs
from transformation.manifest import ensure_manifest

_SPECS = dbt_specs(ensure_manifest(dbt_files))


@dg.multi_asset(  # what @dbt_assets passes (dagster_dbt/asset_decorator.py)
    specs=_SPECS.assets,
    check_specs=_SPECS.checks,
    name=DBT_ASSETS_NAME,
    can_subset=True,
    op_tags=_SPECS.op_tags,
    allow_arbitrary_check_specs=True,  # dbt tests on the ingestion location's raw tables
)
def dbt_analytics(context: dg.AssetExecutionContext, dbt: WarehouseDbt, postgres: PostgresResource):
    """`dbt build` of the selected models and tests, one build at a time per warehouse, in
    this process on the prepared manifest.

    Both gold tables describe one moment, the build's start (var as_of), taken once the
    build holds the lock. Tests read the rows written since the lock was taken
    (var changed_since): every row after a first build or a full rewrite, the changed ones
    after an incremental build, which skips the uniqueness tests its indexes enforce
    (WarehouseDbt.build_args).
    """
    from transformation.translator import warehouse_translator

    dbt.prepare(postgres.database)  # dbt and the manifest load before the lock, not under it
    with dbt_build_lock(postgres, on_wait=context.log.info) as locked_at:
        yield from dbt.run_in_process(
            dbt.build_args(postgres, as_of=datetime.now(UTC), changed_since=locked_at),
            database=postgres.database,
            context=context,
            dagster_dbt_translator=warehouse_translator(),
            warehouse=postgres,  # a failed check shows its failing rows
        )
