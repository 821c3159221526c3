"""Assets of the ingestion location, loaded with everything else under defs/."""
