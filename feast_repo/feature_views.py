"""Feature views over the gold history tables that dbt builds (schema gold of the warehouse).

A history table holds one version per entity and dbt build, stamped with the build's as-of
time (event_timestamp). The online store serves each entity's newest
version; training data for (entity, T) is the newest version stamped at or before T, which is
what was served at T, built only from entries ingested by then (point-in-time correct).
"""

from datetime import timedelta

from entities import game_type_entity, user_entity
from feast import FeatureView, Field
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
    PostgreSQLSource,
)
from feast.types import Float64, Int32, Int64, String

# Feature names are unique across views, so a service that joins both (analyzer_v1) needs no
# full_feature_names: game type features carry a game_type_ prefix over gold's column names.
GAME_TYPE_FIELDS = {
    "entries_1d": "game_type_entries_1d",
    "entries_30d": "game_type_entries_30d",
    "active_users_30d": "game_type_active_users_30d",
    "avg_score_30d": "game_type_avg_score_30d",
    "avg_mood_30d": "game_type_avg_mood_30d",
    "avg_duration_minutes_30d": "game_type_avg_duration_minutes_30d",
}

# Every build appends a version of each entity: two days lets a point-in-time join cover
# builds that stopped for a while without answering with a week-old state.
DAILY_ROW_TTL = timedelta(days=2)

user_journal_features_source = PostgreSQLSource(
    name="gold_user_journal_features",
    table="gold.user_journal_features_history",
    timestamp_field="event_timestamp",
    created_timestamp_column="updated_at",
    description="dbt model gold.user_journal_features_history: each user's versions.",
)

user_journal_features = FeatureView(
    name="user_journal_features",
    entities=[user_entity],
    ttl=DAILY_ROW_TTL,
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="entries_7d", dtype=Int32),
        Field(name="entries_30d", dtype=Int32),
        Field(name="avg_mood_30d", dtype=Float64),
        Field(name="avg_score_30d", dtype=Float64),
        Field(name="minutes_30d", dtype=Int64),
        Field(name="favorite_game_type", dtype=String),
        Field(name="days_since_last_entry", dtype=Int32),
        Field(name="current_streak_days", dtype=Int32),
    ],
    source=user_journal_features_source,
    online=True,
    description="A user's journaling habits over the last 7 and 30 days.",
    tags={"owner": "ml-platform", "consumer": "analyzer"},
)

game_type_stats_source = PostgreSQLSource(
    name="gold_game_type_stats",
    table="gold.game_type_stats_history",
    timestamp_field="event_timestamp",
    created_timestamp_column="updated_at",
    field_mapping=GAME_TYPE_FIELDS,
    description="dbt model gold.game_type_stats_history: each game type's versions.",
)

game_type_stats = FeatureView(
    name="game_type_stats",
    entities=[game_type_entity],
    ttl=DAILY_ROW_TTL,
    schema=[
        Field(name="game_type_id", dtype=Int64),
        Field(name="game_type_name", dtype=String),
        Field(name="category", dtype=String),
        Field(name="game_type_entries_1d", dtype=Int32),
        Field(name="game_type_entries_30d", dtype=Int32),
        Field(name="game_type_active_users_30d", dtype=Int32),
        Field(name="game_type_avg_score_30d", dtype=Float64),
        Field(name="game_type_avg_mood_30d", dtype=Float64),
        Field(name="game_type_avg_duration_minutes_30d", dtype=Float64),
    ],
    source=game_type_stats_source,
    online=True,
    description="How much each game type is played, and how it scores, over 1 and 30 days.",
    tags={"owner": "ml-platform", "consumer": "analyzer"},
)
