"""The dbt assets' specs, kept beside the manifest so that loading the location needs no dbt.

Importing dagster-dbt imports dbt (about 2 s of CPU), and ``@dbt_assets`` builds dbt's
selection graph from the manifest (about 0.5 s more): every code server start and every run
paid both before its first step. What ``@dbt_assets`` makes of a manifest depends only on the
manifest, on dagster-dbt and on this location's translator, so it is built once per manifest
(on the first load after dbt/ changed, by `make dbt-manifest`, at image build) and stored as
Dagster's own serialized values in dbt/target/. The steps import dagster-dbt when they run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from hashlib import sha256
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._serdes import deserialize_value, serialize_value

logger = logging.getLogger(__name__)

DBT_ASSETS_NAME = "dbt_analytics"
SPECS_FILE = "dagster_specs.json"
# what @dbt_assets puts in each spec's metadata for DbtCliResource.cli: Python objects the UI
# shows as "(unserializable)"; dbt_in_process.py passes them to dagster-dbt explicitly
_RUNTIME_METADATA = {
    "dagster_dbt/manifest",
    "dagster_dbt/dagster_dbt_translator",
    "dagster_dbt/project",
}
# the code that decides the specs, besides the manifest and the installed versions
_SPEC_SOURCES = (
    Path(__file__),
    Path(__file__).with_name("translator.py"),
    Path(__file__).with_name("dbt_config.py"),
)


@dataclass(frozen=True)
class DbtSpecs:
    """What ``@dbt_assets`` builds from the manifest, and the sources with a freshness rule."""

    assets: list[dg.AssetSpec]
    checks: list[dg.AssetCheckSpec]
    op_tags: dict[str, str]
    # unique_id -> asset key, source_name, name, relation_name, freshness (the rule, as text)
    freshness_sources: dict[str, dict[str, Any]]


def fingerprint(manifest_path: Path) -> str:
    """Changes whenever the specs built from ``manifest_path`` could change."""
    from data_platform import definitions, locations

    digest = sha256(manifest_path.read_bytes())
    for package in ("dagster", "dagster-dbt", "dbt-core"):
        digest.update(f"{package}=={version(package)}\n".encode())
    for source in (*_SPEC_SOURCES, Path(definitions.__file__), Path(locations.__file__)):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _dep(dep: dg.AssetDep) -> dict[str, Any]:
    return {"key": dep.asset_key, "partition_mapping": dep.partition_mapping, "meta": dep.metadata}


def _asset_dep(raw: dict[str, Any]) -> dg.AssetDep:
    return dg.AssetDep(raw["key"], partition_mapping=raw["partition_mapping"], metadata=raw["meta"])


def _asset(spec: dg.AssetSpec) -> dict[str, Any]:
    if spec.partitions_def or spec.freshness_policy or spec.legacy_freshness_policy:
        raise ValueError(f"{spec.key.to_user_string()}: dbt_specs.py stores no partitions or "
                         "freshness policies; add them to _asset and _asset_spec")  # fmt: skip
    return {
        "key": spec.key,
        "deps": [_dep(d) for d in spec.deps],
        "description": spec.description,
        "metadata": {k: v for k, v in spec.metadata.items() if k not in _RUNTIME_METADATA},
        "skippable": spec.skippable,
        "group_name": spec.group_name,
        "code_version": spec.code_version,
        "automation_condition": spec.automation_condition,
        "owners": list(spec.owners),
        "tags": dict(spec.tags),
    }


def _asset_spec(raw: dict[str, Any]) -> dg.AssetSpec:
    return dg.AssetSpec(**{**raw, "deps": [_asset_dep(d) for d in raw["deps"]]})


def _check(spec: dg.AssetCheckSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "asset": spec.asset_key,
        "description": spec.description,
        "additional_deps": [_dep(d) for d in spec.additional_deps],
        "blocking": spec.blocking,
        "metadata": dict(spec.metadata or {}),
        "automation_condition": spec.automation_condition,
    }


def _check_spec(raw: dict[str, Any]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        **{**raw, "additional_deps": [_asset_dep(d) for d in raw["additional_deps"]]}
    )


def build_specs(manifest_path: Path) -> DbtSpecs:
    """Ask dagster-dbt (``@dbt_assets`` with this location's translator and project)."""
    from dagster_dbt import dbt_assets

    from transformation.dbt_config import dbt_project
    from transformation.translator import warehouse_translator

    translator = warehouse_translator()
    manifest = json.loads(manifest_path.read_text())  # dagster-dbt caches what it reads by path

    @dbt_assets(
        manifest=manifest,
        project=dbt_project,
        dagster_dbt_translator=translator,
        name=DBT_ASSETS_NAME,
    )
    def built(context):  # type: ignore[no-untyped-def]  # never runs: its specs are kept
        raise NotImplementedError

    freshness = {
        unique_id: {
            "key": translator.get_asset_key(props),
            **{field: props[field] for field in ("source_name", "name", "relation_name")},
            "freshness": str(props["freshness"]),  # as the check's description shows it
        }
        for unique_id, props in manifest["sources"].items()
        if (props.get("freshness") or {}).get("warn_after", {}).get("count")
        or (props.get("freshness") or {}).get("error_after", {}).get("count")
    }
    return DbtSpecs(
        assets=[_asset_spec(_asset(spec)) for spec in built.specs],
        checks=[_check_spec(_check(spec)) for spec in built.check_specs],
        op_tags=dict(built.op.tags),
        freshness_sources=freshness,
    )


def _serialized(specs: DbtSpecs, key: str) -> str:
    return json.dumps(
        {
            "fingerprint": key,
            "specs": serialize_value(
                {
                    "assets": [_asset(s) for s in specs.assets],
                    "checks": [_check(s) for s in specs.checks],
                    "op_tags": specs.op_tags,
                    "freshness_sources": specs.freshness_sources,
                }
            ),
        }
    )


def write_specs(manifest_path: Path) -> Path:
    """Build the specs and store them beside the manifest (atomically: loaders run alongside)."""
    path = manifest_path.with_name(SPECS_FILE)
    text = _serialized(build_specs(manifest_path), fingerprint(manifest_path))
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".specs-", delete=False) as out:
        out.write(text)
    os.chmod(out.name, 0o644)  # as the manifest: an image's code server runs as another user
    os.replace(out.name, path)
    return path


def _stored(manifest_path: Path) -> DbtSpecs | None:
    path = manifest_path.with_name(SPECS_FILE)
    try:
        stored = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if stored.get("fingerprint") != fingerprint(manifest_path):
        return None
    raw = deserialize_value(stored["specs"], dict)
    return DbtSpecs(
        assets=[_asset_spec(s) for s in raw["assets"]],
        checks=[_check_spec(s) for s in raw["checks"]],
        op_tags=raw["op_tags"],
        freshness_sources=raw["freshness_sources"],
    )


@cache
def dbt_specs(manifest_path: Path) -> DbtSpecs:
    """The specs stored for this manifest; built (and stored where dbt/ is writable) when the
    manifest, dagster-dbt or the translator changed since."""
    stored = _stored(manifest_path)
    if stored is not None:
        return stored
    if not os.access(manifest_path.parent, os.W_OK):
        logger.warning(
            "%s is missing or outdated and %s is read-only: building the dbt specs on every "
            "load (images store them at build: python -m transformation.dbt_specs)",
            SPECS_FILE,
            manifest_path.parent,
        )
        return build_specs(manifest_path)
    logger.info("building the dbt asset specs for %s", manifest_path)
    write_specs(manifest_path)
    stored = _stored(manifest_path)
    if stored is None:
        raise RuntimeError(f"{manifest_path.with_name(SPECS_FILE)} was written but not read back")
    return stored  # as every later load will see them: read back, not as built


if __name__ == "__main__":
    from transformation.dbt_resource import dbt_files
    from transformation.manifest import ensure_manifest

    print(f"wrote {write_specs(ensure_manifest(dbt_files))}")
