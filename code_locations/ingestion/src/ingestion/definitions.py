from data_platform.discovery import build_location_definitions

from ingestion import LOCATION

defs = build_location_definitions(LOCATION, "ingestion")
