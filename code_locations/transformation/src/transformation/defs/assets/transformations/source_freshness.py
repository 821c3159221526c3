"""dbt source freshness as asset checks on the ingestion location's raw assets.

dagster-dbt turns dbt tests into checks but not `dbt source freshness`. These checks run it
after every ingestion of the source and every hour at :30, so a raw table that stops
receiving data turns the check red even when nothing runs downstream.
"""

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from data_platform.resources import PostgresResource

from transformation.dbt_resource import WarehouseDbt, dbt_files
from transformation.dbt_specs import dbt_specs
from transformation.manifest import ensure_manifest

CHECK_NAME = "dbt_source_freshness"
_HOURLY: dg.AutomationCondition[dg.AssetKey | dg.AssetCheckKey] = (
    dg.AutomationCondition.cron_tick_passed("30 * * * *")
)
FRESHNESS_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated() | _HOURLY
).since_last_handled() & ~dg.AutomationCondition.in_progress()


# dbt sources with a freshness rule, by unique_id, as dbt_specs.py stored them
_SOURCES = dbt_specs(ensure_manifest(dbt_files)).freshness_sources
_KEYS: dict[str, dg.AssetKey] = {uid: source["key"] for uid, source in _SOURCES.items()}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=key,
            description=f"dbt source freshness of {_SOURCES[uid]['relation_name']}: "
            f"warn/error after {_SOURCES[uid]['freshness']}",
            automation_condition=FRESHNESS_AUTOMATION,
        )
        for uid, key in _KEYS.items()
    ],
    name="raw_source_freshness",
    can_subset=True,
)
def raw_source_freshness(
    context: dg.AssetCheckExecutionContext, dbt: WarehouseDbt, postgres: PostgresResource
) -> Iterator[dg.AssetCheckResult]:
    """Run `dbt source freshness` for the selected sources, in this process on the prepared
    manifest (dbt_in_process.py: no dbt start-up, no parse); warn or error as dbt says."""
    from dagster_dbt import DbtProject

    from transformation.dbt_in_process import run_dbt

    selected = [
        uid
        for uid, key in _KEYS.items()
        if dg.AssetCheckKey(key, CHECK_NAME) in context.selected_asset_check_keys
    ]
    selectors = [
        f"source:{_SOURCES[uid]['source_name']}.{_SOURCES[uid]['name']}" for uid in selected
    ]
    results = {}
    with tempfile.TemporaryDirectory(prefix="dbt-freshness-") as target_path:
        outcome = run_dbt(
            ["source", "freshness", "--select", *selectors],
            project=DbtProject(project_dir=dbt.project_dir, profiles_dir=dbt.profiles_dir),
            database=postgres.database,
            target_path=Path(target_path),
        )
        sources_json = Path(target_path) / "sources.json"
        if sources_json.exists():
            results = {r["unique_id"]: r for r in json.loads(sources_json.read_text())["results"]}
    for uid in selected:
        result = results.get(uid, {"status": "runtime error", "error": outcome.exception})
        status = result["status"]
        yield dg.AssetCheckResult(
            asset_key=_KEYS[uid],
            check_name=CHECK_NAME,
            passed=status == "pass",
            severity=dg.AssetCheckSeverity.WARN
            if status == "warn"
            else dg.AssetCheckSeverity.ERROR,
            metadata={
                "status": status,
                "max_loaded_at": str(result.get("max_loaded_at")),
                "age_seconds": float(result.get("max_loaded_at_time_ago_in_s") or 0.0),
                "error": str(result.get("error") or ""),
            },
        )
