from data_platform.discovery import build_location_definitions

from transformation import LOCATION

defs = build_location_definitions(LOCATION, "transformation")
