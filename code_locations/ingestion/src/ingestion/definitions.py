"""The ingestion location: everything under defs/, loaded by Dagster's defs-folder loader."""

from data_platform.definitions import location_definitions

from ingestion import LOCATION

defs = location_definitions(LOCATION, __file__)
