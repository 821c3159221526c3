"""The feature_store location: everything under defs/, loaded by Dagster's defs-folder loader."""

from data_platform.definitions import location_definitions

from feature_store import LOCATION

defs = location_definitions(LOCATION, __file__)
