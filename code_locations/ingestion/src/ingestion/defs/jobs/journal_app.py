import dagster as dg

get_game_types_job = dg.define_asset_job(
    name="get_game_types_job",
    selection=dg.AssetSelection.assets("get_game_types_from_api"),
)

ingest_journal_app_job = dg.define_asset_job(
    name="ingest_journal_app_job",
    selection=dg.AssetSelection.groups("ingestion"),
    description="Everything from the journal app: users, game types, journal entries.",
)

ingest_journal_app_hourly = dg.ScheduleDefinition(
    name="ingest_journal_app_hourly",
    job=ingest_journal_app_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
