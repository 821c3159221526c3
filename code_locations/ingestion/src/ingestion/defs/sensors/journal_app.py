"""Ingest as soon as the upstream changed, not at the next hourly tick.

Every ``PROBE_INTERVAL_SECONDS`` the sensor asks the upstream, for each endpoint, for at most
one row stamped after that endpoint's cursor (the ``updated_since`` filter every incremental
API has): four tiny requests and one read of raw.ingestion_cursors. A change launches
ingest_journal_app_job, unless one is already queued or running (runs never pile up; the
running one, or the next tick, takes the change) or the last one failed within
``FAILURE_BACKOFF_SECONDS`` (a broken upstream is not hammered). Rows committed late behind a
cursor are not seen by the probe; the next load's look-back window and the hourly schedule
take them.
"""

import time

import dagster as dg
from data_platform.resources import PostgresResource

from ingestion.journal_api import JournalApiResource
from ingestion.raw_tables import read_cursors
from ingestion.records import RECORD_TYPES, Tombstone, UpstreamError

JOB = "ingest_journal_app_job"
PROBE_INTERVAL_SECONDS = 5  # the daemon evaluates sensors at most every 5 s anyway
FAILURE_BACKOFF_SECONDS = 300
ENDPOINTS = tuple(t.endpoint for t in (*RECORD_TYPES, Tombstone))
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _blocking_run(instance: dg.DagsterInstance) -> str | None:
    """Why not to launch now: a run in flight, or a failure too recent; None to go ahead."""
    in_flight = instance.get_runs(dg.RunsFilter(job_name=JOB, statuses=IN_FLIGHT), limit=1)
    if in_flight:
        return f"run {in_flight[0].run_id} of {JOB} is {in_flight[0].status.value}"
    latest = instance.get_run_records(dg.RunsFilter(job_name=JOB), limit=1)
    if latest and latest[0].dagster_run.status == dg.DagsterRunStatus.FAILURE:
        ended = latest[0].end_time or latest[0].update_timestamp.timestamp()
        if time.time() - ended < FAILURE_BACKOFF_SECONDS:
            return (
                f"run {latest[0].dagster_run.run_id} of {JOB} failed less than "
                f"{FAILURE_BACKOFF_SECONDS} s ago; retrying after that"
            )
    return None


@dg.sensor(
    name="ingest_journal_app_on_change",
    job_name=JOB,
    minimum_interval_seconds=PROBE_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches the journal app's ingestion when the upstream has rows newer than "
    "the stored cursors (one single-row request per endpoint).",
)
def ingest_journal_app_on_change(
    context: dg.SensorEvaluationContext,
    postgres: PostgresResource,
    journal_api: JournalApiResource,
) -> dg.RunRequest | dg.SkipReason:
    if (reason := _blocking_run(context.instance)) is not None:
        return dg.SkipReason(reason)
    with postgres.connect(autocommit=True) as conn:
        cursors = read_cursors(conn)
    try:
        changed = [e for e in ENDPOINTS if journal_api.changed_after(e, cursors.get(e))]
    except UpstreamError as error:
        return dg.SkipReason(f"the upstream did not answer the change probe: {error}")
    if not changed:
        return dg.SkipReason(f"nothing upstream after the cursors of {', '.join(ENDPOINTS)}")
    context.log.info(f"upstream changed: {', '.join(changed)}")
    return dg.RunRequest(tags={"ingestion/changed": ",".join(changed)})
