"""The asset that keeps Redis serving what gold says: apply feast_repo, then materialize."""

import time

import dagster as dg
from data_platform.definitions import eager_until_requested
from data_platform.resources import RedisResource
from pydantic import Field

from feature_store.feast_resource import FeastResource

# the transformation location builds these with dbt; lineage crosses locations by key
# (the history tables: each build's versions, what Feast's feature views read)
USER_JOURNAL_FEATURES = dg.AssetKey(["gold", "user_journal_features_history"])
GAME_TYPE_STATS = dg.AssetKey(["gold", "game_type_stats_history"])


class MaterializeConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description="Rewrite every entity's newest row, not only what changed since the last "
        "run: repairs Redis after the consistency check failed or Redis lost its data.",
    )


@dg.asset(
    name="materialize_user_journal_features",
    group_name="feature_store",
    deps=[USER_JOURNAL_FEATURES, GAME_TYPE_STATS],
    kinds={"feast", "redis"},
    # dbt runs follow one another while upstream changes: take each gold build as it lands
    automation_condition=eager_until_requested(wait_for_deps_in_progress=False),
    description="Applies feast_repo to the Feast registry (as `feast apply`: changed objects "
    "updated, removed ones deleted) and materializes the gold tables into Redis incrementally.",
)
def materialize_user_journal_features(
    context: dg.AssetExecutionContext,
    config: MaterializeConfig,
    feast: FeastResource,
    online_store: RedisResource,
) -> dg.MaterializeResult:
    from feature_store import materialization, registry_sync
    from feature_store.registry_lock import registry_lock

    started = time.monotonic()
    store = feast.feature_store()
    # one registry writer at a time, across runs and pods: apply and materialize both write it
    with registry_lock(store.config.registry.path, "writes", on_wait=context.log.info):
        changes = registry_sync.apply(store, feast.repo_contents(store))
        context.log.info(f"Feast registry: {changes.summary()}")
        store.refresh_registry()
        views = [view for view in store.list_feature_views() if view.online]
        full = {v.name for v in views} if config.full_refresh else changes.changed_feature_views()
        windows = materialization.materialize(
            store, views, full, log=context.log.info, client=online_store.client()
        )
    rows = sum(w.rows for w in windows)
    seconds = time.monotonic() - started
    return dg.MaterializeResult(
        metadata={
            "registry_changes": changes.summary(),
            "rows_written": dg.MetadataValue.int(rows),
            # of those, rows whose values changed (the others were only restamped)
            "rows_written_in_full": dg.MetadataValue.int(sum(w.written for w in windows)),
            "rows_per_second": dg.MetadataValue.float(rows / seconds if seconds else 0.0),
            "windows": dg.MetadataValue.json(
                {
                    w.feature_view: {
                        "start": w.start.isoformat(),
                        "end": w.end.isoformat(),
                        "full": w.full,
                        "rows": w.rows,
                        "written_in_full": w.written,
                        "restamped": w.rows - w.written,
                        "removed": w.removed,
                    }
                    for w in windows
                }
            ),
            **{f"rows_{w.feature_view}": dg.MetadataValue.int(w.rows) for w in windows},
        }
    )
