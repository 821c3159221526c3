"""Jobs and schedules of the ingestion location."""
