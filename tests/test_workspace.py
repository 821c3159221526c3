"""The workspace as a whole: every location loads the way production loads it, and the asset
graph across locations matches its reviewed snapshot.

The snapshot (tests/snapshots/asset_graph.json) makes an unintended change to the graph (a
renamed key, a lost dependency, a dropped automation condition) show up in review. After an
intended change: `UPDATE_SNAPSHOTS=1 make test`, and commit the new snapshot.
"""

import importlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from data_platform.locations import LOCATIONS, TRANSFORMATION

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


@pytest.fixture(scope="module")
def definitions() -> dict[str, dg.Definitions]:
    return {loc.name: importlib.import_module(loc.module).defs for loc in LOCATIONS}


def test_every_location_loads_as_production_loads_it(tmp_path: Path):
    """`dagster definitions validate`, the check a code server's start would fail on."""
    modules = [arg for loc in LOCATIONS for arg in ("-m", loc.module)]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", *modules],
        cwd=tmp_path,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for loc in LOCATIONS:
        assert f"Validation successful for code location {loc.module}" in output


def test_definitions_are_loadable_in_process(definitions):
    for defs in definitions.values():
        dg.Definitions.validate_loadable(defs)


def graph(definitions: dict[str, dg.Definitions]) -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    for location, defs in definitions.items():
        asset_graph = defs.resolve_asset_graph()
        for key in sorted(asset_graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
            node = asset_graph.get(key)
            condition = node.automation_condition
            nodes[key.to_user_string()] = {
                "location": location,
                "group": node.group_name,
                "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
                "automation": condition.get_label() or type(condition).__name__
                if condition
                else None,
                "checks": sorted(
                    check.name for check in asset_graph.get_check_keys_for_assets({key})
                ),
            }
    return nodes


def test_asset_graph_matches_the_reviewed_snapshot(definitions):
    current = graph(definitions)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, (
        "the asset graph changed; if that is intended, run `UPDATE_SNAPSHOTS=1 make test` "
        "and commit tests/snapshots/asset_graph.json"
    )


def test_every_dependency_resolves_to_one_defining_location(definitions) -> None:
    owners: dict[dg.AssetKey, list[str]] = defaultdict(list)
    dependencies: dict[dg.AssetKey, set[dg.AssetKey]] = {}
    check_targets: set[dg.AssetKey] = set()
    for name, defs in definitions.items():
        graph = defs.resolve_asset_graph()
        for key in graph.get_all_asset_keys():
            node = graph.get(key)
            if node.is_executable:
                owners[key].append(name)
                dependencies[key] = set(node.parent_keys)
        check_targets |= {check.asset_key for check in graph.asset_check_keys}

    claimed_twice = {key.to_user_string(): names for key, names in owners.items() if len(names) > 1}
    assert not claimed_twice, f"asset keys defined in more than one location: {claimed_twice}"
    dangling = {
        f"{key.to_user_string()} -> {parent.to_user_string()}"
        for key, parents in dependencies.items()
        for parent in parents
        if parent not in owners
    }
    assert not dangling, (
        f"dependencies no location defines (a gap in the graph): {sorted(dangling)}"
    )
    unowned_checks = {key.to_user_string() for key in check_targets if key not in owners}
    assert not unowned_checks, f"checks on assets no location defines: {unowned_checks}"

    assert owners[dg.AssetKey(["gold", "user_journal_features"])] == [TRANSFORMATION.name]
    assert owners[dg.AssetKey(["gold", "game_type_stats"])] == [TRANSFORMATION.name]
    staging = {
        ("staging", "stg_users"): "api_users",
        ("staging", "stg_game_types"): "get_game_types_from_api",
        ("staging", "stg_journal_entries"): "journal_entries",
    }
    for model, source in staging.items():
        assert dependencies[dg.AssetKey(list(model))] == {dg.AssetKey(source)}
        assert owners[dg.AssetKey(source)] == ["ingestion"]
