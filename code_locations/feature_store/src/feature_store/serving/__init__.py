"""Reading online features back: what the analyzer gets, and what `make demo` prints.

Everything here reads the stores named by feature_store.yaml through the environment, like
the feature server does, so it works in any process the local stack or a pod starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from data_platform import settings
from feast import FeatureStore

from feature_store import gold, online_layout
from feature_store.feast_config import open_feature_store

USER_VIEW = "user_journal_features"


def online_features(
    user_ids: Sequence[int],
    environ: Mapping[str, str] | None = None,
    store: FeatureStore | None = None,
) -> dict[str, dict[str, Any]]:
    """The user features Feast serves for each user, keyed by user id (JSON-ready)."""
    store = store or open_feature_store(environ=environ)
    view = store.get_feature_view(USER_VIEW)
    response = store.get_online_features(
        features=[f"{USER_VIEW}:{feature.name}" for feature in view.features],
        entity_rows=[{"user_id": int(user_id)} for user_id in user_ids],
    ).to_dict()
    ids = response.pop("user_id")
    return {
        str(user_id): {name: values[i] for name, values in sorted(response.items())}
        for i, user_id in enumerate(ids)
    }


def _redis_client(environ: Mapping[str, str]) -> redis.Redis:
    return redis.Redis(
        host=environ[settings.REDIS_HOST],
        port=int(environ[settings.REDIS_PORT]),
        password=environ.get(settings.REDIS_PASSWORD) or None,
    )


def materialized_row_counts(
    environ: Mapping[str, str] | None = None, store: FeatureStore | None = None
) -> dict[str, int]:
    """How many entities Redis serves per feature view (what materialization has written)."""
    environ = os.environ if environ is None else environ
    store = store or open_feature_store(environ=environ)
    client = _redis_client(environ)
    return {
        view.name: sum(1 for _ in online_layout.served_timestamps(client, store.project, view.name))
        for view in sorted(store.list_feature_views(), key=lambda v: v.name)
        if view.online
    }


def sample_user_ids(
    count: int = 3, environ: Mapping[str, str] | None = None, store: FeatureStore | None = None
) -> list[int]:
    """The first ``count`` users of the user feature view's table (stable across runs)."""
    store = store or open_feature_store(environ=environ)
    view = store.get_feature_view(USER_VIEW)
    with gold.connect(store) as conn:
        return gold.first_entities(conn, view, count)


def demo_summary(users: int = 3, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The feature store's part of `make demo`'s JSON line."""
    store = open_feature_store(environ=environ)
    return {
        "materialized_rows": materialized_row_counts(environ, store),
        "online_features": online_features(sample_user_ids(users, store=store), store=store),
    }
