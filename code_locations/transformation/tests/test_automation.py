"""Cross-location automation: a run of the ingestion location's assets makes the dbt models
due, with no click. Evaluated here with Dagster's own evaluator on a real instance; the local
stack test (tests/test_local_stack.py) sees the same chain through the daemon."""

from __future__ import annotations

import dagster as dg
from data_platform.resources import PostgresResource
from ingestion.defs.assets.ingestion.journal_app import journal_app
from ingestion.journal_api import JournalApiResource
from transformation.definitions import defs

DBT_MODELS = {
    dg.AssetKey(["staging", "stg_users"]),
    dg.AssetKey(["staging", "stg_game_types"]),
    dg.AssetKey(["staging", "stg_journal_entries"]),
    dg.AssetKey(["gold", "user_journal_features"]),
    dg.AssetKey(["gold", "game_type_stats"]),
    dg.AssetKey(["gold", "user_journal_features_history"]),
    dg.AssetKey(["gold", "game_type_stats_history"]),
}


def due(result: dg.EvaluateAutomationConditionsResult) -> set[dg.AssetKey | dg.AssetCheckKey]:
    """The assets and checks an automation tick would launch."""
    return {r.key for r in result.results if r.true_subset.size}


def test_the_automation_sensor_runs_from_the_first_deploy() -> None:
    sensors = [
        s for s in defs.sensors or [] if isinstance(s, dg.AutomationConditionSensorDefinition)
    ]
    assert [s.default_status for s in sensors] == [dg.DefaultSensorStatus.RUNNING]


def test_ingestion_run_makes_the_dbt_models_and_freshness_checks_due(
    start_journal_api, warehouse: PostgresResource
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    idle = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert not due(idle), "nothing is due before raw data exists"

    api = start_journal_api(users=20, entries=500)
    ingestion_run = dg.materialize(
        [journal_app],
        resources={"postgres": warehouse, "journal_api": JournalApiResource(base_url=api.url)},
        instance=instance,
    )
    assert ingestion_run.success

    after_ingestion = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, cursor=idle.cursor
    )
    requested = due(after_ingestion)
    assert requested >= DBT_MODELS, requested
    assert dg.AssetCheckKey(dg.AssetKey("journal_entries"), "dbt_source_freshness") in requested
    assert not requested & {dg.AssetKey(k) for k in ("api_users", "journal_entries")}

    handled = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, cursor=after_ingestion.cursor
    )
    assert not due(handled), "requested once per new raw data, not again"
