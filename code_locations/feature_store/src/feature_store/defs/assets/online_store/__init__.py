"""Online features: Feast definitions applied and gold tables materialized into Redis."""
