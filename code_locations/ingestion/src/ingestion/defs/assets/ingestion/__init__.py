"""Assets that fetch data from external sources."""
