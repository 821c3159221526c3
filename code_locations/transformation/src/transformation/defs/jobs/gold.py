import dagster as dg

rebuild_gold_job = dg.define_asset_job(
    name="rebuild_gold_job",
    selection=dg.AssetSelection.all(),
    description="Every dbt model and test, then the exports: a manual catch-up run. Automation "
    "runs the same assets by itself after each ingestion.",
)
