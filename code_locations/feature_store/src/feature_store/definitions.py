from data_platform.discovery import build_location_definitions

from feature_store import LOCATION

defs = build_location_definitions(LOCATION, "feature_store")
