"""The dbt project this location runs, in its own module.

`dagster-dbt project prepare-and-package --file <this file>` finds ``dbt_project`` here and
parses it into dbt/target/manifest.json at image build; keeping it apart from the
``@dbt_assets`` module means that command does not need the manifest it is building.
"""

import shutil
import sys
from collections.abc import Iterator, Sequence
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject
from dagster_dbt.dbt_manifest import DbtManifestParam
from packaging.version import Version

# code_locations/transformation/src/transformation/dbt_config.py -> the repository's dbt/
DBT_PROJECT_DIR = Path(__file__).resolve().parents[4] / "dbt"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR / "profiles")


def dbt_executable() -> str:
    """The dbt installed beside this interpreter (a venv need not be on PATH), else PATH's."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else shutil.which("dbt") or "dbt"


class WarehouseDbtCli(DbtCliResource):
    """DbtCliResource that knows dbt's version from the installed package, and builds in the
    step's own process.

    The stock resource runs `dbt --version` before each command: a whole dbt start-up (seconds)
    plus a PyPI request for the latest release, which a pod without egress waits on.
    """

    @cached_property
    def _cli_version(self) -> Version:
        return Version(installed_version("dbt-core"))

    def prepare(self, database: str) -> None:
        """Load dbt and the prepared manifest now, outside the build lock (dbt_in_process.py)."""
        from transformation.dbt_in_process import prepare

        prepare(Path(DbtProject(project_dir=self.project_dir).manifest_path), database)

    def run_in_process(
        self,
        args: Sequence[str],
        *,
        database: str,
        context: dg.AssetExecutionContext | None = None,
        manifest: DbtManifestParam | None = None,
        dagster_dbt_translator: DagsterDbtTranslator | None = None,
    ) -> Iterator[Any]:
        """`dbt <args>` through dbt's Python API on the prepared manifest (no start-up, no
        parse): the Dagster events .cli(...).stream() would yield (dbt_in_process.py)."""
        from transformation.dbt_in_process import dbt_build_events

        project = DbtProject(project_dir=self.project_dir, profiles_dir=self.profiles_dir)
        return dbt_build_events(
            args,
            project=project,
            database=database,
            target_path=self._get_unique_target_path(context=context),
            context=context,
            manifest=manifest or project.manifest_path,
            translator=dagster_dbt_translator,
        )


def dbt_cli(project: DbtProject = dbt_project) -> WarehouseDbtCli:
    """The dbt CLI on a project; the profile picks its target from DBT_TARGET at run time."""
    # DbtCliResource.__init__ takes a DbtProject; mypy only sees the pydantic field (str)
    return WarehouseDbtCli(project_dir=project, dbt_executable=dbt_executable())  # type: ignore[arg-type]
