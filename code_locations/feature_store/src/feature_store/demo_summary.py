"""The feature store's part of `make demo`'s JSON line (data_platform_dev.stack.demo imports it)."""

from typing import Any


def summary() -> dict[str, Any]:
    """Rows Redis serves per feature view, and three users' features read back through Feast."""
    from feature_store.serving import demo_summary

    result = demo_summary(users=3)
    return {
        "features_materialized": result["materialized_rows"],
        "online_features": result["online_features"],
    }
