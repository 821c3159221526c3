"""The online store reached directly (checks and debugging), beside Feast's own client."""

import dagster as dg
from data_platform import settings

from feature_store import LOCATION

defs = dg.Definitions(resources={"online_store": settings.online_store(LOCATION)})
