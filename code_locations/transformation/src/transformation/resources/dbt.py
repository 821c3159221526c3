from transformation.dbt_config import dbt_cli

dbt = dbt_cli()
