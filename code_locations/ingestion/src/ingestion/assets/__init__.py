"""Assets of the ingestion location, discovered recursively by data_platform.discovery."""
