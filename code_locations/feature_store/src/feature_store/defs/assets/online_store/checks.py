"""Checks on what Redis serves: fresh enough, and equal to gold's newest rows."""

from typing import Any

import dagster as dg
from data_platform.resources import RedisResource
from pydantic import Field

from feature_store.defs.assets.online_store.materialize import materialize_user_journal_features
from feature_store.feast_resource import FeastResource

SERVED_VIEW = "user_journal_features"


class FreshnessConfig(dg.Config):
    sla_minutes: float = Field(
        default=60.0,
        description="How old the oldest user feature row served from Redis may be.",
    )
    view: str = Field(default=SERVED_VIEW, description="The feature view to measure.")


class ConsistencyConfig(dg.Config):
    sample_size: int = Field(
        default=100,
        description="Entities drawn from gold, and as many from Redis, per feature view.",
    )


@dg.asset_check(
    asset=materialize_user_journal_features,
    description="The oldest event time served from Redis is within the freshness SLA.",
)
def online_features_fresh(
    config: FreshnessConfig, feast: FeastResource, online_store: RedisResource
) -> dg.AssetCheckResult:
    from feature_store import online_checks

    result = online_checks.freshness(feast.feature_store(), online_store.client(), config.view)
    lag = result.lag
    metadata: dict[str, Any] = {
        "served_rows": dg.MetadataValue.int(result.served_rows),
        "oldest_served": str(result.oldest_served),
        "newest_served": str(result.newest_served),
        "sla_minutes": dg.MetadataValue.float(config.sla_minutes),
    }
    if lag is None:
        return dg.AssetCheckResult(
            passed=False,
            metadata=metadata,
            description=f"Redis serves no {config.view} rows: materialize the asset.",
        )
    lag_minutes = lag.total_seconds() / 60
    metadata["lag_minutes"] = dg.MetadataValue.float(round(lag_minutes, 2))
    passed = lag_minutes <= config.sla_minutes
    return dg.AssetCheckResult(
        passed=passed,
        metadata=metadata,
        description=None
        if passed
        else f"oldest {config.view} row served is {lag_minutes:.0f} min old "
        f"(SLA {config.sla_minutes:.0f} min): check that ingestion and dbt ran.",
    )


@dg.asset_check(
    asset=materialize_user_journal_features,
    description="For random entities of gold and of Redis, Redis holds the newest gold row's "
    "values, and no row of an entity gold no longer has.",
)
def online_matches_gold(
    config: ConsistencyConfig, feast: FeastResource, online_store: RedisResource
) -> dg.AssetCheckResult:
    from feature_store import online_checks

    store = feast.feature_store()
    views = [view for view in store.list_feature_views() if view.online]
    if not views:
        return dg.AssetCheckResult(
            passed=False,
            description="the Feast registry has no feature views: materialize the asset.",
        )
    result = online_checks.consistency(store, online_store.client(), views, config.sample_size)
    metadata = {
        "sampled": dg.MetadataValue.json(result.sampled),
        "mismatches": dg.MetadataValue.int(len(result.mismatches)),
        "examples": dg.MetadataValue.md("\n".join(f"- {m}" for m in result.mismatches[:10])),
    }
    if result.passed:
        return dg.AssetCheckResult(passed=True, metadata=metadata)
    problems = [str(m) for m in result.mismatches[:3]]
    problems += [f"{name} was never materialized" for name in result.never_materialized]
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=f"{len(result.mismatches)} values differ from gold ({'; '.join(problems)}). "
        "Re-materialize with config full_refresh: true.",
    )
