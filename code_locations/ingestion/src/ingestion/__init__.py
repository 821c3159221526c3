"""Ingestion code location: the journal app's REST API into Postgres schema raw."""

from data_platform.locations import INGESTION

LOCATION = INGESTION.name
