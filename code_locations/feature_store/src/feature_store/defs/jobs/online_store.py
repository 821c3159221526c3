import dagster as dg

materialize_online_features_job = dg.define_asset_job(
    name="materialize_online_features_job",
    selection=dg.AssetSelection.assets("materialize_user_journal_features"),
    description="Apply feast_repo and materialize gold into Redis, then check Redis.",
)

# Automation runs this after every new gold; the schedule catches what automation did not
# trigger (a failed run, a paused sensor) and keeps the freshness check running.
materialize_online_features_hourly = dg.ScheduleDefinition(
    name="materialize_online_features_hourly",
    job=materialize_online_features_job,
    cron_schedule="20 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
