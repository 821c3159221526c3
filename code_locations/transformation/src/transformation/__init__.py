"""Transformation code location: the dbt project (raw -> staging -> gold) and gold exports."""

from data_platform.locations import TRANSFORMATION

LOCATION = TRANSFORMATION.name
