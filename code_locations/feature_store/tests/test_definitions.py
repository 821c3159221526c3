"""The location's graph is what the lineage needs (tests/test_workspace.py loads every
location the way production does)."""

import dagster as dg
from feature_store import LOCATION
from feature_store.definitions import defs

ASSET = dg.AssetKey("materialize_user_journal_features")


def test_asset_graph():
    graph = defs.resolve_asset_graph()
    node = graph.get(ASSET)
    assert node.parent_keys == {
        dg.AssetKey(["gold", "user_journal_features_history"]),
        dg.AssetKey(["gold", "game_type_stats_history"]),
    }
    assert node.group_name == "feature_store"
    assert node.automation_condition is not None
    assert {key.name for key in graph.get_check_keys_for_assets({ASSET})} == {
        "online_features_fresh",
        "online_matches_gold",
    }
    schedule = defs.resolve_schedule_def("materialize_online_features_hourly")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    sensor = defs.resolve_sensor_def(f"{LOCATION}_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {"feast", "online_store"} <= set(defs.resources or {})
