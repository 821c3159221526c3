"""The journal app's REST API, its address from the environment."""

import dagster as dg
from data_platform import settings

from ingestion.journal_api import JournalApiResource

defs = dg.Definitions(
    resources={"journal_api": JournalApiResource(base_url=dg.EnvVar(settings.JOURNAL_API_URL))}
)
