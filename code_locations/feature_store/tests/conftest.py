"""Fixtures: gold tables with known rows, a Feast environment on the real stores, a runner."""

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import dagster as dg
import psycopg
import pytest
import redis
from data_platform import settings
from data_platform.resources import PostgresResource, RedisResource
from feast import FeatureStore
from feature_store.defs.assets.online_store.checks import online_features_fresh, online_matches_gold
from feature_store.defs.assets.online_store.materialize import materialize_user_journal_features
from feature_store.feast_config import DEFAULT_REPO_PATH, FEAST_REPO_PATH, open_feature_store
from feature_store.feast_resource import FeastResource

GOLD_DDL = """
CREATE SCHEMA gold;
CREATE TABLE gold.user_journal_features_history (
    user_id bigint NOT NULL, feature_date date NOT NULL, event_timestamp timestamptz NOT NULL,
    entries_7d integer NOT NULL, entries_30d integer NOT NULL,
    avg_mood_30d double precision, avg_score_30d double precision, minutes_30d bigint NOT NULL,
    favorite_game_type text, days_since_last_entry integer NOT NULL,
    current_streak_days integer NOT NULL, updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, feature_date)
);
CREATE TABLE gold.game_type_stats_history (
    game_type_id bigint NOT NULL, game_type_name text NOT NULL, category text NOT NULL,
    feature_date date NOT NULL, event_timestamp timestamptz NOT NULL,
    entries_1d integer NOT NULL, entries_30d integer NOT NULL, active_users_30d integer NOT NULL,
    avg_score_30d double precision, avg_mood_30d double precision,
    avg_duration_minutes_30d double precision, updated_at timestamptz NOT NULL,
    PRIMARY KEY (game_type_id, feature_date)
);
"""
USER_FEATURES = (
    "entries_7d", "entries_30d", "avg_mood_30d", "avg_score_30d", "minutes_30d",
    "favorite_game_type", "days_since_last_entry", "current_streak_days",
)  # fmt: skip
GAMES = (("chess", "strategy"), ("sudoku", "logic"), ("wordle", "word"))
# the tables Feast's feature views read: dbt's history tables (one version per build)
TABLES = {
    "user_journal_features": "gold.user_journal_features_history",
    "game_type_stats": "gold.game_type_stats_history",
}


@dataclass
class Gold:
    """The gold tables of one test's warehouse, written as dbt would write them."""

    warehouse: PostgresResource
    newest_entry: datetime

    def event_time(self, day: int) -> datetime:
        """Day 0 is today: rows end with the day, but never after the newest entry."""
        midnight = datetime.combine(self.newest_entry.date(), datetime.min.time(), UTC)
        end_of_day = midnight - timedelta(days=day) + timedelta(days=1, microseconds=-1)
        return min(end_of_day, self.newest_entry)

    def write_user_day(self, user_id: int, day: int, seed: int = 0, conn: Any = None) -> None:
        """Insert or rewrite a user's row for ``day`` days ago; values derive from ``seed``."""
        k = user_id * 7 + day * 3 + seed
        row = {
            "entries_7d": k % 9,
            "entries_30d": k % 31,
            "avg_mood_30d": None if user_id % 5 == 0 else 1 + (k % 40) / 10,
            "avg_score_30d": None if user_id % 7 == 0 else round(k * 1.37 % 100, 4),
            "minutes_30d": k * 13,
            "favorite_game_type": None if user_id % 4 == 0 else GAMES[k % len(GAMES)][0],
            "days_since_last_entry": day % 3,
            "current_streak_days": k % 6,
        }
        self._upsert("user_journal_features", ("user_id", user_id), day, row, conn)

    def write_game_type_day(
        self, game_type_id: int, day: int, seed: int = 0, conn: Any = None
    ) -> None:
        k = game_type_id * 11 + day * 5 + seed
        name, category = GAMES[(game_type_id - 1) % len(GAMES)]
        row = {
            "game_type_name": name,
            "category": category,
            "entries_1d": k % 17,
            "entries_30d": k * 3,
            "active_users_30d": k % 23,
            "avg_score_30d": k / 8,
            "avg_mood_30d": 1 + k % 4 / 2,
            "avg_duration_minutes_30d": 10 + k / 16,
        }
        self._upsert("game_type_stats", ("game_type_id", game_type_id), day, row, conn)

    def _upsert(
        self, table: str, key: tuple[str, int], day: int, row: dict[str, Any], conn: Any
    ) -> None:
        if conn is None:
            with self.warehouse.connect() as own:
                return self._upsert(table, key, day, row, own)
        moment = self.event_time(day)
        values = {key[0]: key[1], "feature_date": moment.date(), "event_timestamp": moment, **row}
        columns = [*values, "updated_at"]
        updates = ", ".join(
            f"{c} = EXCLUDED.{c}" for c in columns if c not in (key[0], "feature_date")
        )
        conn.execute(
            f"INSERT INTO {TABLES[table]} ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(values))}, clock_timestamp()) "
            f"ON CONFLICT ({key[0]}, feature_date) DO UPDATE SET {updates}",
            list(values.values()),
        )

    def latest(self, table: str, key: str) -> dict[int, dict[str, Any]]:
        """Each entity's newest row, by event time then write time (what Redis must serve)."""
        with psycopg.connect(self.warehouse.conninfo(), row_factory=psycopg.rows.dict_row) as conn:
            rows = conn.execute(
                f"SELECT DISTINCT ON ({key}) * FROM {TABLES[table]} "
                f"ORDER BY {key}, event_timestamp DESC, updated_at DESC"
            ).fetchall()
        return {row[key]: row for row in rows}


@pytest.fixture
def gold(warehouse: PostgresResource) -> Gold:
    """Gold tables holding 12 users and 3 game types over the last 5 days."""
    tables = Gold(warehouse, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5))
    with warehouse.connect() as conn:
        conn.execute(GOLD_DDL)
        for day in range(5):
            for user_id in range(1, 13):
                tables.write_user_day(user_id, day, conn=conn)
            for game_type_id in range(1, 4):
                tables.write_game_type_day(game_type_id, day, conn=conn)
    return tables


@dataclass
class FeastEnv:
    repo_path: Path
    environ: dict[str, str]
    online_store: RedisResource

    def store(self) -> FeatureStore:
        return open_feature_store(self.repo_path)

    def redis(self) -> redis.Redis:
        return self.online_store.client()

    def edit(self, file: str, old: str, new: str) -> None:
        """Change the test's copy of feast_repo, as an engineer would."""
        path = self.repo_path / file
        text = path.read_text()
        assert old in text, f"{old!r} not in {file}"
        path.write_text(text.replace(old, new))


def feast_environment(
    warehouse: PostgresResource,
    registry: PostgresResource,
    online_store: RedisResource,
    repo_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> FeastEnv:
    """A copy of feast_repo at ``repo_path`` and the environment contract for these stores."""
    shutil.copytree(DEFAULT_REPO_PATH, repo_path, ignore=shutil.ignore_patterns("__pycache__"))
    environ = {
        settings.POSTGRES_HOST: warehouse.host,
        settings.POSTGRES_PORT: str(warehouse.port),
        settings.POSTGRES_USER: warehouse.user,
        settings.POSTGRES_PASSWORD: warehouse.password,
        settings.WAREHOUSE_DB: warehouse.database,
        settings.FEAST_REGISTRY_DB: registry.database,
        settings.REDIS_HOST: online_store.host,
        settings.REDIS_PORT: str(online_store.port),
        settings.REDIS_PASSWORD: online_store.password,
        FEAST_REPO_PATH: str(repo_path),
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return FeastEnv(repo_path, environ, online_store)


@pytest.fixture
def feast_env(
    gold: Gold,
    new_database: Callable[[str], PostgresResource],
    online_store: RedisResource,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> FeastEnv:
    """A copy of feast_repo and the environment contract pointing at this test's stores."""
    registry = new_database("feast_registry")
    return feast_environment(
        gold.warehouse, registry, online_store, tmp_path / "feast_repo", monkeypatch
    )


@pytest.fixture
def run_feature_store(feast_env: FeastEnv) -> Callable[..., dg.ExecuteInProcessResult]:
    """Run the asset and its checks in process, as the location's job would."""

    def run(
        full_refresh: bool = False,
        checks_only: bool = False,
        sla_minutes: float = 60.0,
        sample_size: int = 1000,
    ) -> dg.ExecuteInProcessResult:
        ops: dict[str, Any] = {
            online_features_fresh.op.name: {"config": {"sla_minutes": sla_minutes}},
            online_matches_gold.op.name: {"config": {"sample_size": sample_size}},
        }
        if not checks_only:
            ops["materialize_user_journal_features"] = {"config": {"full_refresh": full_refresh}}
        return dg.materialize(
            [materialize_user_journal_features, online_features_fresh, online_matches_gold],
            selection=dg.AssetSelection.checks_for_assets(materialize_user_journal_features)
            if checks_only
            else None,
            resources={
                "feast": FeastResource(repo_path=str(feast_env.repo_path)),
                "online_store": feast_env.online_store,
            },
            run_config={"ops": ops},
            raise_on_error=False,
        )

    return run


@pytest.fixture
def online_rows(feast_env: FeastEnv) -> Callable[..., dict[int, dict[str, Any]]]:
    """Read user features back through Feast's SDK, as the analyzer does."""

    def read(user_ids: list[int], view: str = "user_journal_features") -> dict[int, dict[str, Any]]:
        store = feast_env.store()
        key = "user_id" if view == "user_journal_features" else "game_type_id"
        names = [f.name for f in store.get_feature_view(view).features]
        response = store.get_online_features(
            features=[f"{view}:{name}" for name in names],
            entity_rows=[{key: i} for i in user_ids],
        ).to_dict()
        return {
            entity: {name: response[name][i] for name in names}
            for i, entity in enumerate(response[key])
        }

    return read


@pytest.fixture
def redis_snapshot(feast_env: FeastEnv) -> Callable[[], dict[bytes, dict[bytes, bytes]]]:
    def snapshot() -> dict[bytes, dict[bytes, bytes]]:
        client = feast_env.redis()
        return {key: cast(dict, client.hgetall(key)) for key in client.scan_iter(count=1000)}

    return snapshot


@pytest.fixture
def metadata_of() -> Callable[[dg.ExecuteInProcessResult], dict[str, Any]]:
    """The materialization metadata of the asset, as plain values."""

    def read(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
        (event,) = result.get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    return read


@pytest.fixture
def check_results() -> Callable[[dg.ExecuteInProcessResult], dict[str, Any]]:
    def read(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
        return {e.check_name: e for e in result.get_asset_check_evaluations()}

    return read


@pytest.fixture
def step_error() -> Callable[[dg.ExecuteInProcessResult], str]:
    def read(result: dg.ExecuteInProcessResult) -> str:
        messages = []
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data.error is not None:
                error: Any = event.step_failure_data.error
                while error is not None:
                    messages.append(error.message)
                    error = error.cause
        return "\n".join(messages)

    return read


@pytest.fixture
def gold_expected(gold: Gold) -> Callable[[], dict[int, dict[str, Any]]]:
    """Gold's newest user rows, reduced to the features Feast serves."""

    def expected() -> dict[int, dict[str, Any]]:
        return {
            user: {name: row[name] for name in USER_FEATURES}
            for user, row in gold.latest("user_journal_features", "user_id").items()
        }

    return expected
