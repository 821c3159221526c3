"""Resources of the ingestion location; every instance here is discovered by its variable name."""
