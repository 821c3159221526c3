"""Feature store code location: Feast definitions applied, gold tables materialized into Redis."""

from data_platform.locations import FEATURE_STORE

LOCATION = FEATURE_STORE.name
