"""Resources of the feature store location: one Definitions(resources=...) per module."""
