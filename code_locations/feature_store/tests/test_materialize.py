"""Apply and materialize against a real Postgres and Redis, read back through Feast."""

import threading
from datetime import UTC, datetime
from typing import Any

import psycopg
from data_platform_dev.stack.processes import wait_until
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feature_store import online_layout
from feature_store.registry_lock import registry_lock


def test_materialized_features_equal_gold(
    run_feature_store, gold, gold_expected, online_rows, metadata_of
):
    result = run_feature_store()
    assert result.success
    expected = gold_expected()
    assert online_rows(list(expected)) == expected
    games = gold.latest("game_type_stats", "game_type_id")
    served_games = online_rows(list(games), view="game_type_stats")
    assert {g: served_games[g]["game_type_avg_score_30d"] for g in games} == {
        g: row["avg_score_30d"] for g, row in games.items()
    }
    metadata = metadata_of(result)
    assert metadata["rows_user_journal_features"] == len(expected)
    assert metadata["rows_game_type_stats"] == len(games)
    assert "created" in metadata["registry_changes"]


def test_feature_service_serves_both_views(run_feature_store, feast_env, gold, gold_expected):
    """analyzer_v1 joins both views with plain feature names: none of them collide."""
    assert run_feature_store().success
    store = feast_env.store()
    user, game = min(gold_expected()), 2
    response = store.get_online_features(
        features=store.get_feature_service("analyzer_v1"),
        entity_rows=[{"user_id": user, "game_type_id": game}],
    ).to_dict()
    expected_user = gold_expected()[user]
    expected_game = gold.latest("game_type_stats", "game_type_id")[game]
    assert response["minutes_30d"] == [expected_user["minutes_30d"]]
    assert response["entries_30d"] == [expected_user["entries_30d"]]
    assert response["game_type_name"] == [expected_game["game_type_name"]]
    assert response["game_type_entries_30d"] == [expected_game["entries_30d"]]
    assert response["game_type_avg_mood_30d"] == [expected_game["avg_mood_30d"]]


def test_feature_service_gives_training_data(run_feature_store, feast_env, gold, gold_expected):
    """get_historical_features through analyzer_v1: gold's row of each entity at that time."""
    import pandas as pd

    assert run_feature_store().success
    store = feast_env.store()
    moment = gold.event_time(1)
    entities = pd.DataFrame(
        {"user_id": [3, 4], "game_type_id": [1, 2], "event_timestamp": [moment, moment]}
    )
    frame = store.get_historical_features(
        entity_df=entities, features=store.get_feature_service("analyzer_v1")
    ).to_df()
    rows = {r["user_id"]: r for r in frame.to_dict("records")}
    with gold.warehouse.connect() as conn:
        expected = dict(
            conn.execute(
                "SELECT user_id, minutes_30d FROM gold.user_journal_features_history "
                "WHERE event_timestamp = %s AND user_id IN (3, 4)",
                [moment],
            ).fetchall()
        )
        games = dict(
            conn.execute(
                "SELECT game_type_id, entries_30d FROM gold.game_type_stats_history "
                "WHERE event_timestamp = %s",
                [moment],
            ).fetchall()
        )
    assert {u: r["minutes_30d"] for u, r in rows.items()} == expected
    assert {r["game_type_id"]: r["game_type_entries_30d"] for r in rows.values()} == {
        1: games[1],
        2: games[2],
    }


def test_rematerializing_is_idempotent(run_feature_store, redis_snapshot, metadata_of):
    assert run_feature_store().success
    first = redis_snapshot()
    again = run_feature_store()
    assert again.success
    assert redis_snapshot() == first
    assert metadata_of(again)["registry_changes"] == "registry already matches feast_repo"


def test_incremental_run_picks_up_new_and_rewritten_rows(
    run_feature_store, gold, gold_expected, online_rows, metadata_of
):
    assert run_feature_store().success
    gold.write_user_day(4, day=1, seed=9)  # a late entry rewrites yesterday's row in place
    gold.write_user_day(5, day=0, seed=9)  # ... and today's, keeping its event time
    gold.newest_entry = datetime.now(UTC)
    gold.write_user_day(3, day=0, seed=5)  # a new entry moves today's row on
    again = run_feature_store()
    assert again.success
    windows = metadata_of(again)["windows"]
    assert windows["user_journal_features"]["full"] is False
    expected = gold_expected()
    assert online_rows([3, 4, 5]) == {user: expected[user] for user in (3, 4, 5)}


def test_changed_view_is_reapplied_and_fully_materialized(
    run_feature_store, feast_env, gold_expected, online_rows, metadata_of
):
    assert run_feature_store().success
    feast_env.edit(
        "feature_views.py",
        'Field(name="current_streak_days", dtype=Int32),\n    ],\n    source=user_journal_features_source',
        "],\n    source=user_journal_features_source",
    )
    feast_env.edit(
        "feature_views.py",
        "entities=[user_entity],\n    ttl=DAILY_ROW_TTL,",
        "entities=[user_entity],\n    ttl=timedelta(days=3),",
    )
    result = run_feature_store()
    assert result.success
    metadata = metadata_of(result)
    assert metadata["registry_changes"] == (
        "updated feature service analyzer_v1, feature view user_journal_features"
    )
    assert metadata["windows"]["user_journal_features"]["full"] is True
    assert metadata["windows"]["game_type_stats"]["full"] is False
    view = feast_env.store().get_feature_view("user_journal_features")
    assert view.ttl.days == 3
    assert "current_streak_days" not in {f.name for f in view.features}
    expected = gold_expected()
    served = online_rows(list(expected))
    assert served == {
        user: {k: v for k, v in row.items() if k != "current_streak_days"}
        for user, row in expected.items()
    }


def test_deleted_view_leaves_registry_and_redis(run_feature_store, feast_env, redis_snapshot):
    assert run_feature_store().success
    feast_env.edit(
        "feature_services.py", "[user_journal_features, game_type_stats]", "[user_journal_features]"
    )
    feast_env.edit(
        "feature_services.py",
        "from feature_views import game_type_stats, user_journal_features",
        "from feature_views import user_journal_features",
    )
    text = (feast_env.repo_path / "feature_views.py").read_text()
    (feast_env.repo_path / "feature_views.py").write_text(
        text[: text.index("game_type_stats_source =")]
    )
    result = run_feature_store()
    assert result.success
    store = feast_env.store()
    assert [v.name for v in store.list_feature_views()] == ["user_journal_features"]
    assert [s.name for s in store.list_data_sources()] == ["gold_user_journal_features"]
    fields = {field for row in redis_snapshot().values() for field in row}
    assert b"_ts:game_type_stats" not in fields
    assert b"_ts:user_journal_features" in fields


def test_apply_waits_for_the_registry_lock(run_feature_store, feast_env, gold):
    """A second writer (another run, another pod) holds the lock: this run queues behind it."""
    store = feast_env.store()
    registry_db = feast_env.environ["FEAST_REGISTRY_DB"]
    outcome: dict[str, Any] = {}

    def run_waiting_for_lock() -> bool:
        with psycopg.connect(gold.warehouse.conninfo()) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = %s",
                [registry_db],
            ).fetchone()
        return bool(row and row[0])

    with registry_lock(store.config.registry.path, "writes"):
        worker = threading.Thread(target=lambda: outcome.update(result=run_feature_store()))
        worker.start()
        wait_until(run_waiting_for_lock, "the run to wait for the registry lock", timeout=60)
        store.refresh_registry()
        assert store.list_feature_views() == [], (
            "the run applied while another writer held the lock"
        )
    worker.join(timeout=120)
    assert outcome["result"].success
    store.refresh_registry()
    assert len(store.list_feature_views()) == 2


def test_deleted_users_leave_redis(run_feature_store, gold, online_rows, metadata_of):
    """A user gone from gold (deleted upstream, or every entry deleted) is no longer served."""
    assert run_feature_store().success
    assert online_rows([5])[5]["minutes_30d"] is not None
    with gold.warehouse.connect() as conn:
        conn.execute("DELETE FROM gold.user_journal_features_history WHERE user_id = 5")
    result = run_feature_store()
    assert result.success
    assert metadata_of(result)["windows"]["user_journal_features"]["removed"] == 1
    assert set(online_rows([5])[5].values()) == {None}
    assert online_rows([6])[6]["minutes_30d"] is not None


def test_keys_expire_and_reads_then_report_missing(run_feature_store, feast_env, online_rows):
    """A key that is not rewritten in time expires: Feast reads it as NOT_FOUND, not stale."""
    client, project = feast_env.redis(), feast_env.store().project
    assert run_feature_store().success
    key = online_layout.entity_key(project, "user_id", 1)
    assert 0 < client.ttl(key) <= feast_env.store().config.online_store.key_ttl_seconds
    # long enough to read the key once after the run and its checks on a loaded machine
    feast_env.edit("feature_store.yaml", "key_ttl_seconds: 10800", "key_ttl_seconds: 8")
    assert run_feature_store(full_refresh=True).success
    store = feast_env.store()
    read = lambda: store.get_online_features(  # noqa: E731
        features=["user_journal_features:minutes_30d"], entity_rows=[{"user_id": 1}]
    ).to_dict(include_event_timestamps=False)
    assert read()["minutes_30d"] != [None]
    wait_until(lambda: not client.exists(key), "the key to expire", timeout=20)
    assert read()["minutes_30d"] == [None]
    response = store.get_online_features(
        features=["user_journal_features:minutes_30d"], entity_rows=[{"user_id": 1}]
    ).proto
    statuses = dict(zip(response.metadata.feature_names.val, response.results, strict=True))
    assert list(statuses["minutes_30d"].statuses) == [FieldStatus.NOT_FOUND]


def test_incremental_run_writes_only_changed_users(
    run_feature_store, feast_env, gold, gold_expected, online_rows, metadata_of
):
    """A build appends a version of every user; only changed ones are written in full, the
    others restamped (event time, TTL) unless Redis lost the previous version."""
    assert run_feature_store().success
    client = feast_env.redis()
    key_of = {u: online_layout.entity_key("data_platform", "user_id", u) for u in range(1, 13)}
    client.persist(key_of[5])  # a restamp renews the TTL
    client.delete(key_of[4])  # Redis lost this user's row: it must be written again
    with gold.warehouse.connect() as conn:
        conn.execute(
            "INSERT INTO gold.user_journal_features_history "
            "SELECT DISTINCT ON (user_id) user_id, feature_date + 1, "
            "event_timestamp + interval '1 minute', entries_7d, entries_30d, avg_mood_30d, "
            "avg_score_30d, minutes_30d + CASE WHEN user_id = 3 THEN 1 ELSE 0 END, "
            "favorite_game_type, days_since_last_entry, current_streak_days, clock_timestamp() "
            "FROM gold.user_journal_features_history "
            "ORDER BY user_id, event_timestamp DESC"
        )
        (new_time,) = conn.execute(
            "SELECT max(event_timestamp) FROM gold.user_journal_features_history"
        ).fetchone()
    again = run_feature_store()
    assert again.success
    window = metadata_of(again)["windows"]["user_journal_features"]
    assert (window["full"], window["rows"], window["written_in_full"]) == (False, 12, 2)
    assert window["restamped"] == 10
    expected = gold_expected()
    assert online_rows(list(expected)) == expected
    stamps = {
        u: online_layout.decode_timestamp(
            client.hget(key_of[u], online_layout.timestamp_field("user_journal_features"))
        )
        for u in range(1, 13)
    }
    assert set(stamps.values()) == {new_time}
    assert all(client.ttl(key_of[u]) > 0 for u in range(1, 13))


def test_rows_sent_in_several_buffers_equal_gold(
    run_feature_store, gold_expected, online_rows, metadata_of, monkeypatch
):
    """Each buffer's replies are read once the next buffer is out: several buffers per view."""
    from feature_store import materialization

    monkeypatch.setattr(materialization, "CHUNK", 5)
    result = run_feature_store(full_refresh=True)
    assert result.success
    expected = gold_expected()
    assert len(expected) > 2 * materialization.CHUNK
    assert online_rows(list(expected)) == expected
    assert metadata_of(result)["rows_user_journal_features"] == len(expected)
