"""The stored dbt specs are what dagster-dbt builds now, and a changed manifest rebuilds them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import dagster as dg
from transformation.dbt_resource import dbt_files
from transformation.dbt_specs import SPECS_FILE, build_specs, dbt_specs
from transformation.manifest import ensure_manifest


def by_key(specs: Iterable[dg.AssetSpec]) -> dict[dg.AssetKey, dg.AssetSpec]:
    """dagster-dbt lists a model's deps in set order, which differs between processes."""
    return {
        s.key: s.replace_attributes(deps=sorted(s.deps, key=lambda d: d.asset_key.path))
        for s in specs
    }


def test_the_location_loads_the_assets_dagster_dbt_builds() -> None:
    """Keys, deps, descriptions, metadata, automation, checks and op tags: all of it, except
    the three Python objects dagster-dbt keeps in the metadata for DbtCliResource.cli."""
    from transformation.defs.assets.transformations.dbt_assets import dbt_analytics
    from transformation.defs.assets.transformations.source_freshness import (
        raw_source_freshness,
    )

    built = build_specs(ensure_manifest(dbt_files))
    assert by_key(dbt_analytics.specs) == by_key(built.assets)
    assert {s.key: s for s in dbt_analytics.check_specs} == {s.key: s for s in built.checks}
    assert dbt_analytics.op.tags == built.op_tags
    assert {s.asset_key for s in raw_source_freshness.check_specs} == {
        s["key"] for s in built.freshness_sources.values()
    }


def test_a_changed_manifest_rebuilds_the_stored_specs(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    shutil.copy(ensure_manifest(dbt_files), manifest)
    first = dbt_specs(manifest)
    assert (tmp_path / SPECS_FILE).stat().st_mode & 0o777 == 0o644  # readable by any user

    content = json.loads(manifest.read_text())
    node = next(n for n in content["nodes"].values() if n["resource_type"] == "model")
    node["description"] = "changed here"
    manifest.write_text(json.dumps(content))
    dbt_specs.cache_clear()
    second = dbt_specs(manifest)
    key = dg.AssetKey([node["config"]["schema"], node["name"]])
    assert next(s for s in second.assets if s.key == key).description.startswith("changed here")
    assert next(s for s in first.assets if s.key == key).description != "changed here"


def test_a_subset_builds_only_what_was_selected(chess_player) -> None:
    """The step finds dbt's selection from the run's subset and the stored unique ids, as
    DbtCliResource.cli would from dagster-dbt's own assets definition."""
    from transformation.dbt_resource import dbt_cli
    from transformation.defs.assets.transformations.dbt_assets import dbt_analytics

    staging = dg.AssetKey(["staging", "stg_game_types"])
    result = dg.materialize(
        [dbt_analytics],
        resources={"dbt": dbt_cli(), "postgres": chess_player},
        selection=dg.AssetSelection.assets(staging),
    )
    assert result.success
    assert {m.asset_key for m in result.get_asset_materialization_events()} == {staging}
    sources = {d.asset_key for d in dbt_analytics.get_asset_spec(staging).deps}
    checked = {c.asset_key for c in result.get_asset_check_evaluations()}
    assert staging in checked and checked <= {staging, *sources}  # and tests on its source
