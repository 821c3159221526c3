"""The location loads the way production loads it, and its graph is what the lineage needs."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from data_platform.discovery import build_location_definitions
from feature_store import LOCATION

ASSET = dg.AssetKey("materialize_user_journal_features")


def test_definitions_load(tmp_path):
    dagster = Path(sys.executable).with_name("dagster")
    home = tmp_path / "dagster_home"
    home.mkdir()
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "feature_store.definitions"],
        cwd=tmp_path,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Validation successful" in completed.stdout + completed.stderr


def test_asset_graph():
    defs = build_location_definitions(LOCATION, "feature_store")
    graph = defs.resolve_asset_graph()
    node = graph.get(ASSET)
    assert node.parent_keys == {
        dg.AssetKey(["gold", "user_journal_features"]),
        dg.AssetKey(["gold", "game_type_stats"]),
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
