"""Jobs and schedules of the ingestion location, discovered from every module in this folder."""
