"""Resources of the ingestion location: one Definitions(resources=...) per module."""
