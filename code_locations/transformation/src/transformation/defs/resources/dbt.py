"""The dbt CLI over the project in dbt/."""

import dagster as dg

from transformation.dbt_resource import dbt_cli

defs = dg.Definitions(resources={"dbt": dbt_cli()})
