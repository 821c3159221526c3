"""Assets that export data to external systems: gold tables as Parquet in object storage."""
