"""The raw schema's migrations as a job of their own, for a deploy step to run before loads.

A load also migrates, once, when it finds the schema behind its declarations (one read per
load otherwise); this job does it ahead of time, so no load ever waits on DDL.
"""

import dagster as dg
from data_platform.resources import PostgresResource

from ingestion.raw_tables import migrate, schema_version


@dg.op(description="Bring schema raw to the declared schema (no-op when current).")
def migrate_raw_schema(context: dg.OpExecutionContext, postgres: PostgresResource) -> None:
    with postgres.connect(autocommit=True) as conn:
        applied = migrate(conn)
    context.log.info(
        f"schema raw at version {schema_version()}: "
        + (f"applied {len(applied)} statement(s)" if applied else "already current")
    )


@dg.job(description="Apply the raw schema's migrations once (run on deploy, before loads).")
def migrate_raw_job() -> None:
    migrate_raw_schema()
