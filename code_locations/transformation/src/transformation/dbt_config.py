"""The dbt project this location runs, in its own module.

`dagster-dbt project prepare-and-package --file <this file>` finds ``dbt_project`` here and
parses it into dbt/target/manifest.json at image build; keeping it apart from the
``@dbt_assets`` module means that command does not need the manifest it is building.
"""

import shutil
import sys
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging.version import Version

# code_locations/transformation/src/transformation/dbt_config.py -> the repository's dbt/
DBT_PROJECT_DIR = Path(__file__).resolve().parents[4] / "dbt"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR / "profiles")


def dbt_executable() -> str:
    """The dbt installed beside this interpreter (a venv need not be on PATH), else PATH's."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else shutil.which("dbt") or "dbt"


class WarehouseDbtCli(DbtCliResource):
    """DbtCliResource that knows dbt's version from the installed package.

    The stock resource runs `dbt --version` before each command: a whole dbt start-up (seconds)
    plus a PyPI request for the latest release, which a pod without egress waits on.
    """

    @cached_property
    def _cli_version(self) -> Version:
        return Version(installed_version("dbt-core"))


def dbt_cli(project: DbtProject = dbt_project) -> DbtCliResource:
    """The dbt CLI on a project; the profile picks its target from DBT_TARGET at run time."""
    # DbtCliResource.__init__ takes a DbtProject; mypy only sees the pydantic field (str)
    return WarehouseDbtCli(project_dir=project, dbt_executable=dbt_executable())  # type: ignore[arg-type]
