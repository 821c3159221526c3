"""The warehouse, connections named after this location."""

import dagster as dg
from data_platform import settings

from ingestion import LOCATION

postgres = settings.warehouse(LOCATION)

defs = dg.Definitions(resources={"postgres": postgres})
