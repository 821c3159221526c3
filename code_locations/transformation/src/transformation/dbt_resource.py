"""The dbt project's files and the `dbt` resource, without importing dbt or dagster-dbt.

Every code server and run loads this location; dbt and dagster-dbt cost about 2 s to import,
so only the steps that run dbt import them (dbt_config.py, dbt_in_process.py).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    from dagster_dbt import DagsterDbtTranslator
    from dagster_dbt.dbt_manifest import DbtManifestParam
    from data_platform.resources import PostgresResource

# code_locations/transformation/src/transformation/dbt_resource.py -> the repository's dbt/
DBT_PROJECT_DIR = Path(__file__).resolve().parents[4] / "dbt"


@dataclass(frozen=True)
class DbtFiles:
    """Where dagster-dbt's DbtProject finds the project, its profiles and the manifest."""

    project_dir: Path
    profiles_dir: Path

    @property
    def manifest_path(self) -> Path:
        return self.project_dir / "target" / "manifest.json"  # DbtProject's default target


dbt_files = DbtFiles(DBT_PROJECT_DIR, DBT_PROJECT_DIR / "profiles")


def dbt_executable() -> str:
    """The dbt installed beside this interpreter (a venv need not be on PATH), else PATH's."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else shutil.which("dbt") or "dbt"


class WarehouseDbt(dg.ConfigurableResource):
    """dbt on the project in dbt/, run in the step's own process (dbt_in_process.py)."""

    project_dir: str
    profiles_dir: str

    def prepare(self, database: str) -> None:
        """Load dbt and the prepared manifest now, outside the build lock (dbt_in_process.py)."""
        from transformation.dbt_in_process import prepare

        prepare(DbtFiles(Path(self.project_dir), Path(self.profiles_dir)).manifest_path, database)

    def build_args(
        self, warehouse: PostgresResource, *, as_of: datetime, changed_since: datetime
    ) -> list[str]:
        """`dbt build` as the dbt_analytics asset runs it: as of ``as_of`` (var as_of), its
        tests reading the rows written since ``changed_since`` (var changed_since). When every
        incremental model's table exists, none is built from scratch: the build skips the
        tests tagged `enforced` (uniqueness a unique index or primary key guarantees).
        """
        from transformation.dbt_in_process import incremental_relations

        build_vars = {"as_of": as_of.isoformat(), "changed_since": changed_since.isoformat()}
        args = ["build", "--vars", json.dumps(build_vars)]
        manifest = DbtFiles(Path(self.project_dir), Path(self.profiles_dir)).manifest_path
        tables = incremental_relations(manifest, warehouse.database)
        with warehouse.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NULL",
                [tables],
            ).fetchone()
        if tables and row is not None and row[0] == 0:
            args += ["--exclude", "tag:enforced"]
        return args

    def run_in_process(
        self,
        args: Sequence[str],
        *,
        database: str,
        context: dg.AssetExecutionContext | None = None,
        manifest: DbtManifestParam | None = None,
        dagster_dbt_translator: DagsterDbtTranslator | None = None,
        warehouse: PostgresResource | None = None,
    ) -> Iterator[Any]:
        """`dbt <args>` through dbt's Python API on the prepared manifest (no dbt start-up,
        no parse): the Dagster events DbtCliResource's .cli(...).stream() would yield, for the
        assets and checks the context selected (dbt_in_process.py); with ``warehouse``, a
        failed check shows what its test found."""
        from dagster_dbt import DbtCliResource, DbtProject

        from transformation.dbt_in_process import dbt_build_events

        project = DbtProject(project_dir=self.project_dir, profiles_dir=self.profiles_dir)
        # DbtCliResource takes a DbtProject; mypy only sees the pydantic field (str)
        cli = DbtCliResource(project_dir=project, dbt_executable=dbt_executable())  # type: ignore[arg-type]
        return dbt_build_events(
            args,
            project=project,
            database=database,
            target_path=cli._get_unique_target_path(context=context),  # as .cli() names it
            context=context,
            manifest=manifest or project.manifest_path,
            translator=dagster_dbt_translator,
            warehouse=warehouse,
        )


def dbt_cli(files: DbtFiles = dbt_files) -> WarehouseDbt:
    """The dbt resource; the profile picks its target from DBT_TARGET at run time."""
    return WarehouseDbt(project_dir=str(files.project_dir), profiles_dir=str(files.profiles_dir))
