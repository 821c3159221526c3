"""Resources of the transformation location: one Definitions(resources=...) per module."""
