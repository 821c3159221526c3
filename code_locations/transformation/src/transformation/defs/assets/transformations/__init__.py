"""Assets that transform data: the dbt models, their tests as checks, source freshness."""
