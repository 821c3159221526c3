"""The online store reached directly (checks and debugging), beside Feast's own client."""

from data_platform import settings

from feature_store import LOCATION

online_store = settings.online_store(LOCATION)
