"""The dbt project this location runs, in its own module.

`dagster-dbt project prepare-and-package --file <this file>` finds ``dbt_project`` here and
parses it into dbt/target/manifest.json at image build; keeping it apart from the
``@dbt_assets`` module means that command does not need the manifest it is building.
Importing this module imports dagster-dbt and dbt: the location's load does not
(dbt_resource.py, dbt_specs.py).
"""

from dagster_dbt import DbtProject

# re-exported: tests and benchmarks import them from here
from transformation.dbt_resource import DBT_PROJECT_DIR, dbt_cli, dbt_executable, dbt_files

__all__ = ["DBT_PROJECT_DIR", "dbt_cli", "dbt_executable", "dbt_project"]

dbt_project = DbtProject(project_dir=dbt_files.project_dir, profiles_dir=dbt_files.profiles_dir)
