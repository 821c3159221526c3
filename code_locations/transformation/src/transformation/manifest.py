"""The dbt manifest: prepared when it is missing or older than dbt/, checked against dbt/.

Dagster reads the models, tests and sources from manifest.json. Locally the location prepares
it on load whenever a file under dbt/ is newer (like make), so nobody has to remember
`dbt compile`. In an image it is prepared at build and dbt/ is read-only: a manifest is then
used as it is, and a missing one fails the load with the command that builds it.
``manifest_drift`` is the exact check (a fresh parse compared node by node) that the test runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformation.dbt_resource import dbt_executable
from transformation.dbt_templates import template_cache_dir

if TYPE_CHECKING:
    from dagster_dbt import DbtProject

    from transformation.dbt_resource import DbtFiles

logger = logging.getLogger(__name__)

PREPARE_COMMAND = "make dbt-manifest"
# dbt build products and installed packages: not sources of the manifest
_NOT_SOURCES = {"target", "logs", "dbt_packages"}
# sections that describe the project (dbt's own and the adapter's macros are not in dbt/)
_SECTIONS = (
    "nodes",
    "sources",
    "macros",
    "exposures",
    "metrics",
    "groups",
    "semantic_models",
    "saved_queries",
    "unit_tests",
)
# what differs between two parses of the same files, comes from the profile, or is added by
# `dbt compile`/`dbt build` (the design note's manual command writes a compiled manifest)
_VOLATILE = {
    "created_at",
    "database",
    "relation_name",
    "root_path",
    "build_path",
    "compiled",
    "compiled_code",
    "compiled_path",
    "extra_ctes",
    "extra_ctes_injected",
}


class ManifestNotPreparedError(RuntimeError):
    """No usable manifest.json: dbt/ is read-only without one, or `dbt parse` failed."""


def source_files(project_dir: Path) -> Iterator[Path]:
    """Every file under dbt/ that the manifest is parsed from (profiles included)."""
    for root, dirs, files in os.walk(project_dir):
        dirs[:] = sorted(d for d in dirs if d not in _NOT_SOURCES and not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def is_outdated(project: DbtFiles | DbtProject) -> bool:
    """True when manifest.json is missing or older than a file under dbt/."""
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(path.stat().st_mtime > built for path in source_files(project.project_dir))


def _parse(project: DbtFiles | DbtProject, target_path: Path) -> Path:
    """`dbt parse` into target_path: needs the profile's variables, never the database."""
    target_path.mkdir(parents=True, exist_ok=True)
    cache = project.manifest_path.parent / "partial_parse.msgpack"
    if cache.exists() and cache.parent != target_path:
        shutil.copy2(cache, target_path / cache.name)  # dbt re-reads every file that changed
    completed = subprocess.run(
        [
            dbt_executable(),
            "parse",
            "--quiet",
            "--project-dir",
            str(project.project_dir),
            "--profiles-dir",
            str(project.profiles_dir),
        ],
        env={
            **os.environ,
            "DBT_TARGET_PATH": str(target_path),
            "DBT_LOG_PATH": str(target_path),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        },
        cwd=project.project_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise ManifestNotPreparedError(
            f"`dbt parse` failed in {project.project_dir} (exit {completed.returncode}); fix the "
            f"dbt project:\n{(completed.stdout + completed.stderr).strip()[-3000:]}"
        )
    return target_path / "manifest.json"


def prepare_manifest(project: DbtFiles | DbtProject) -> Path:
    """Parse dbt/ and swap the new manifest in atomically: a loader never reads half a file."""
    logger.info("preparing the dbt manifest: dbt parse in %s", project.project_dir)
    target = project.manifest_path.parent
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".prepare-") as scratch:
        _parse(project, Path(scratch))
        for name in ("partial_parse.msgpack", "semantic_manifest.json", "manifest.json"):
            if (Path(scratch) / name).exists():
                os.replace(Path(scratch) / name, target / name)
    # the old manifest's compiled templates: builds compile and keep the new ones
    shutil.rmtree(template_cache_dir(project.manifest_path), ignore_errors=True)
    return project.manifest_path


def ensure_manifest(project: DbtFiles | DbtProject) -> Path:
    """The manifest to load, prepared first when outdated and dbt/ is writable."""
    if not is_outdated(project):
        return project.manifest_path
    if os.access(project.project_dir, os.W_OK):
        return prepare_manifest(project)
    if project.manifest_path.exists():
        logger.warning("dbt/ is read-only: using %s as built", project.manifest_path)
        return project.manifest_path
    raise ManifestNotPreparedError(
        f"no dbt manifest at {project.manifest_path} and {project.project_dir} is read-only. "
        "Images prepare it at build: dagster-dbt project prepare-and-package --file "
        "code_locations/transformation/src/transformation/dbt_config.py; locally run "
        f"`{PREPARE_COMMAND}`."
    )


def _fingerprints(manifest: Mapping[str, Any], project_name: str) -> dict[str, str]:
    """unique_id -> hash of what the project defines for it (volatile fields left out)."""
    prints = {}
    for section in _SECTIONS:
        for unique_id, node in (manifest.get(section) or {}).items():
            if section == "macros" and node.get("package_name") != project_name:
                continue
            stable = {k: v for k, v in node.items() if k not in _VOLATILE}
            if isinstance(stable.get("depends_on"), dict):  # compiling adds macro dependencies
                stable["depends_on"] = stable["depends_on"].get("nodes")
            prints[unique_id] = sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()
    return prints


def manifest_drift(project: DbtProject, manifest_path: Path | None = None) -> list[str]:
    """What differs between a manifest and a fresh parse of dbt/; empty when they match."""
    manifest_path = manifest_path or project.manifest_path
    if not manifest_path.exists():
        return [f"no manifest at {manifest_path}"]
    in_use = _fingerprints(json.loads(manifest_path.read_text()), project.name)
    with tempfile.TemporaryDirectory(prefix="dbt-parse-") as scratch:
        fresh_manifest = _parse(project, Path(scratch))
        fresh = _fingerprints(json.loads(fresh_manifest.read_text()), project.name)
    problems = [
        f"{uid}: defined in dbt/ but missing from the manifest"
        for uid in sorted(fresh.keys() - in_use.keys())
    ]
    problems += [
        f"{uid}: in the manifest but no longer in dbt/"
        for uid in sorted(in_use.keys() - fresh.keys())
    ]
    problems += [
        f"{uid}: changed in dbt/ since the manifest was built"
        for uid in sorted(fresh.keys() & in_use.keys())
        if fresh[uid] != in_use[uid]
    ]
    return problems
