"""The manifest Dagster loads must match dbt/; a stale one is found, named and rebuilt."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from dagster_dbt import DbtProject
from transformation.dbt_config import DBT_PROJECT_DIR, dbt_project
from transformation.manifest import (
    PREPARE_COMMAND,
    ensure_manifest,
    is_outdated,
    manifest_drift,
)


def test_manifest_in_use_matches_dbt_project() -> None:
    from transformation.defs.assets.transformations import dbt_assets  # loads it like the location

    del dbt_assets
    drift = manifest_drift(dbt_project)
    assert not drift, (
        f"{dbt_project.manifest_path} does not match {DBT_PROJECT_DIR}; Dagster would show "
        f"stale models and checks. Run `{PREPARE_COMMAND}` (or reload the location, which "
        "prepares it when dbt/ is newer). Differences:\n" + "\n".join(drift)
    )


@pytest.fixture
def project_copy(tmp_path: Path) -> DbtProject:
    """A copy of dbt/ without a manifest, to be edited without touching the real one."""
    copy = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    return DbtProject(project_dir=copy, profiles_dir=copy / "profiles")


def test_stale_manifest_is_detected_and_rebuilt(project_copy: DbtProject) -> None:
    assert is_outdated(project_copy)
    ensure_manifest(project_copy)
    assert not is_outdated(project_copy)
    before = project_copy.manifest_path.stat().st_mtime
    time.sleep(0.05)  # a later mtime, even on coarse clocks
    models = project_copy.project_dir / "models"
    (models / "gold" / "user_activity_summary.sql").write_text(
        "select user_id, count(*) as entries from {{ ref('stg_journal_entries') }} group by 1\n"
    )
    staging = models / "staging" / "stg_users.sql"
    staging.write_text(staging.read_text().replace("email,", "lower(email) as email,"))

    assert is_outdated(project_copy)
    drift = manifest_drift(project_copy)
    assert (
        "model.analytics.user_activity_summary: defined in dbt/ but missing from the manifest"
        in drift
    )
    assert "model.analytics.stg_users: changed in dbt/ since the manifest was built" in drift
    assert len(drift) == 2, drift

    ensure_manifest(project_copy)  # what loading the location does in development
    assert project_copy.manifest_path.stat().st_mtime > before
    assert not is_outdated(project_copy)
    nodes = json.loads(project_copy.manifest_path.read_text())["nodes"]
    assert "model.analytics.user_activity_summary" in nodes
    assert not [
        p for p in project_copy.manifest_path.parent.iterdir() if p.name.startswith(".prepare")
    ]


def test_read_only_project_without_manifest_names_the_command(
    project_copy: DbtProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode: (
            False if Path(path) == project_copy.project_dir else real_access(path, mode)
        ),
    )
    with pytest.raises(RuntimeError, match="prepare-and-package"):
        ensure_manifest(project_copy)
