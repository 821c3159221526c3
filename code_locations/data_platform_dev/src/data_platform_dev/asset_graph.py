"""The asset graph across every location, as a reviewable snapshot.

``make snapshot`` writes tests/snapshots/asset_graph.json; the workspace test only compares, so
a changed graph fails the test until someone runs the command and commits the new file.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import dagster as dg
from data_platform.locations import LOCATIONS

SNAPSHOT = Path(__file__).resolve().parents[4] / "tests" / "snapshots" / "asset_graph.json"


def location_definitions() -> dict[str, dg.Definitions]:
    return {loc.name: importlib.import_module(loc.module).defs for loc in LOCATIONS}


def asset_graph(definitions: dict[str, dg.Definitions]) -> dict[str, Any]:
    """Key -> location, group, deps, automation label and checks, for every materializable asset."""
    nodes: dict[str, Any] = {}
    for location, defs in definitions.items():
        graph = defs.resolve_asset_graph()
        for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
            node = graph.get(key)
            condition = node.automation_condition
            nodes[key.to_user_string()] = {
                "location": location,
                "group": node.group_name,
                "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
                "automation": (condition.get_label() or type(condition).__name__)
                if condition
                else None,
                "checks": sorted(check.name for check in graph.get_check_keys_for_assets({key})),
            }
    return nodes


def differences(current: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """What changed, one line per asset: added, removed, or which fields differ."""
    lines = [f"added: {key}" for key in sorted(current.keys() - expected.keys())]
    lines += [f"removed: {key}" for key in sorted(expected.keys() - current.keys())]
    for key in sorted(current.keys() & expected.keys()):
        for field in sorted(current[key].keys() | expected[key].keys()):
            if current[key].get(field) != expected[key].get(field):
                lines.append(
                    f"{key}.{field}: {expected[key].get(field)!r} -> {current[key].get(field)!r}"
                )
    return lines


def main() -> None:
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(
        json.dumps(asset_graph(location_definitions()), indent=2, sort_keys=True) + "\n"
    )
    print(f"wrote {SNAPSHOT}; review the diff and commit it")


if __name__ == "__main__":
    main()
