"""How dbt nodes become Dagster assets: keys by schema, eager automation, team ownership."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings
from data_platform.definitions import eager_until_requested
from data_platform.locations import TRANSFORMATION


class WarehouseTranslator(DagsterDbtTranslator):
    """Models are keyed [schema, name] (the Feast location depends on ["gold", ...]); sources
    keep the ingestion location's keys from their meta.dagster.asset_key."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([dbt_resource_props["config"]["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_group_name(dbt_resource_props)
        return dbt_resource_props["config"]["schema"]

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        """Run as soon as upstream data changes, across locations, without a click."""
        if dbt_resource_props["resource_type"] == "source":
            return None
        return eager_until_requested()

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        return [f"team:{TRANSFORMATION.team}"]


def warehouse_translator() -> WarehouseTranslator:
    """dbt tests become asset checks, the tests on the raw sources included."""
    return WarehouseTranslator(
        settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True)
    )
