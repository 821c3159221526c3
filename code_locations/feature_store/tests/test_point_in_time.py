"""Training data equals what was served: for every user, feature and moment Ti of a replayed
history, get_historical_features(user, Ti) returns what the online store served after the
batch ingested by Ti, with late, corrected, moved and deleted entries along the way.

Real parts end to end: raw tables (the ingestion's DDL), dbt building gold and its history
tables as of simulated times T1..Tn (one day apart, in the past), the location's
materialization asset into Redis, and Feast's SDK reading both stores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from data_platform.resources import PostgresResource, RedisResource
from feature_store.defs.assets.online_store.materialize import materialize_user_journal_features
from feature_store.feast_resource import FeastResource
from feature_store.online_layout import served_timestamps

from .conftest import FeastEnv, feast_environment

DAY = timedelta(days=1)
USERS = [1, 2, 3, 4, 5, 6]
GAMES = [1, 2]
DELETIONS_DDL = """
CREATE TABLE IF NOT EXISTS raw.deletions (
    entity text, id bigint, user_id bigint, played_at timestamptz null,
    deleted_at timestamptz, ingested_at timestamptz, PRIMARY KEY (entity, id)
)
"""


class Raw:
    """raw.* written as the ingestion writes it (upserts stamped now, tombstones applied)."""

    def __init__(self, warehouse: PostgresResource) -> None:
        from ingestion.raw_tables import migrate

        self.warehouse = warehouse
        with warehouse.connect() as conn:
            migrate(conn)
            conn.execute(DELETIONS_DDL)
            for game in GAMES:
                conn.execute(
                    "INSERT INTO raw.game_types (id, created_at, updated_at, name, category, "
                    "_ingested_at) VALUES (%s, now(), now(), %s, 'logic', now() - interval '1 day')",
                    [game, f"game {game}"],
                )
            for user in USERS:
                conn.execute(
                    "INSERT INTO raw.users (id, created_at, updated_at, name, email) "
                    "VALUES (%s, now(), now(), %s, %s)",
                    [user, f"user {user}", f"u{user}@example.com"],
                )

    def entry(self, entry: int, user: int, game: int, at: datetime, score: int) -> None:
        with self.warehouse.connect() as conn:
            conn.execute(
                "INSERT INTO raw.journal_entries (id, created_at, updated_at, user_id, "
                "game_type_id, duration_minutes, score, mood) VALUES (%s, %s, %s, %s, %s, 15, "
                "%s, %s) ON CONFLICT (id) DO UPDATE SET created_at = EXCLUDED.created_at, "
                "user_id = EXCLUDED.user_id, game_type_id = EXCLUDED.game_type_id, "
                "score = EXCLUDED.score, mood = EXCLUDED.mood, _ingested_at = now()",
                [entry, at, at, user, game, score, 1 + score % 5],
            )

    def delete_entry(self, entry: int) -> None:
        with self.warehouse.connect() as conn:
            conn.execute(
                "WITH gone AS (DELETE FROM raw.journal_entries WHERE id = %s "
                "RETURNING id, user_id, created_at) INSERT INTO raw.deletions "
                "SELECT 'journal_entries', id, user_id, created_at, now(), now() FROM gone",
                [entry],
            )

    def delete_user(self, user: int) -> None:
        with self.warehouse.connect() as conn:
            conn.execute("DELETE FROM raw.journal_entries WHERE user_id = %s", [user])
            conn.execute("DELETE FROM raw.users WHERE id = %s", [user])
            conn.execute(
                "INSERT INTO raw.deletions VALUES ('users', %s, %s, null, now(), now())",
                [user, user],
            )


def dbt_run(as_of: datetime) -> None:
    """Every model, as the location's asset would build them at ``as_of``."""
    from dbt.cli.main import dbtRunner
    from transformation.dbt_config import DBT_PROJECT_DIR

    result = dbtRunner().invoke(
        [
            "run",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR / "profiles"),
            "--quiet",
            "--vars",
            json.dumps({"as_of": as_of.isoformat()}),
        ]
    )
    assert result.success, result.exception or result.result


def plain(value: Any) -> Any:
    """A pandas/numpy value as the online store's Python value (NaN and NA as None)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


@pytest.fixture
def replay(
    new_database: Callable[[str], PostgresResource],
    online_store: RedisResource,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Raw, FeastEnv]:
    warehouse = new_database("pit_warehouse")
    env = feast_environment(
        warehouse, new_database("pit_registry"), online_store, tmp_path / "feast_repo", monkeypatch
    )
    monkeypatch.setenv("DBT_TARGET", "local")
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt-target"))
    return Raw(warehouse), env


def test_training_data_equals_what_was_served(replay) -> None:
    raw, env = replay
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 8 * DAY
    moments = [start + i * DAY + timedelta(hours=3 * i) for i in range(1, 7)]

    def batch(i: int) -> None:
        """What the upstream sends before moment i: new, late, corrected, moved, deleted."""
        now = moments[i]
        for user in USERS[: 3 + i % 4]:
            raw.entry(
                100 * i + user,
                user,
                GAMES[user % 2],
                now - timedelta(hours=user),
                100 * i + 7 * user,
            )
        if i >= 1:  # a late entry for the day before yesterday
            raw.entry(1000 + i, 1 + i % 4, 1, now - 2 * DAY, 500 + i)
        if i >= 2:  # a correction of an earlier entry's score
            raw.entry(100 * (i - 1) + 2, 2, GAMES[0], moments[i - 1] - timedelta(hours=2), 999)
        if i == 3:  # an entry moved to another day and user
            raw.entry(101, 4, GAMES[1], moments[2] - timedelta(hours=5), 321)
        if i == 4:  # an entry deleted upstream
            raw.delete_entry(203)
        if i == 5:  # a user deleted upstream
            raw.delete_user(6)

    resources = {
        "feast": FeastResource(repo_path=str(env.repo_path)),
        "online_store": env.online_store,
    }
    served: dict[tuple[int, int], dict[str, Any]] = {}
    for i, moment in enumerate(moments):
        batch(i)
        dbt_run(moment)
        assert dg.materialize([materialize_user_journal_features], resources=resources).success
        store = env.store()
        # every served row is as fresh as this build, active user or not: nothing ages into
        # the freshness SLA or the key TTL while builds run
        stamps = list(served_timestamps(env.redis(), store.project, "user_journal_features"))
        assert stamps and min(stamps) == moment
        rows = [{"user_id": u, "game_type_id": GAMES[u % 2]} for u in USERS]
        response = store.get_online_features(
            features=store.get_feature_service("analyzer_v1"), entity_rows=rows
        ).to_dict()
        for index, user in enumerate(USERS):
            served[(i, user)] = {
                name: values[index]
                for name, values in response.items()
                if name not in ("user_id", "game_type_id")
            }

    user_features = [f.name for f in env.store().get_feature_view("user_journal_features").features]
    assert {served[(5, 6)][name] for name in user_features} == {None}, "a deleted user is served"
    kept = [(i, u) for (i, u) in served if u != 6]  # a deleted user's history is gone too
    store = env.store()
    entity_df = pd.DataFrame(
        {
            "user_id": [u for _, u in kept],
            "game_type_id": [GAMES[u % 2] for _, u in kept],
            "event_timestamp": [moments[i] for i, _ in kept],
            "moment": [i for i, _ in kept],
        }
    )
    training = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service("analyzer_v1")
    ).to_df()
    compared = 0
    differences = []
    for record in training.to_dict("records"):
        i = record["moment"]
        online = served[(i, record["user_id"])]
        for name, value in online.items():
            compared += 1
            if plain(record[name]) != value:
                differences.append(
                    f"T{i} user {record['user_id']} {name}: served {value!r}, training {plain(record[name])!r}"
                )
    assert len(training) == len(kept)
    assert not differences, f"{len(differences)} of {compared} values differ:\n" + "\n".join(
        differences[:20]
    )
    assert compared >= 400
    served_values = sum(
        v is not None for (i, u), row in served.items() if u != 6 for v in row.values()
    )
    assert served_values > compared / 2, "most values should be real values, not missing ones"
