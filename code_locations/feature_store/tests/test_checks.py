"""The asset checks: freshness of what Redis serves, and agreement with gold."""

from feast.protos.feast.types.Value_pb2 import Value
from feature_store import online_layout


def test_checks_pass_after_materializing(run_feature_store, check_results):
    checks = check_results(run_feature_store())
    assert checks["online_matches_gold"].passed
    assert checks["online_matches_gold"].metadata["sampled"].value == {
        "game_type_stats": 3,
        "user_journal_features": 12,
    }
    assert checks["online_features_fresh"].passed


def test_consistency_fails_on_a_corrupted_value_until_rematerialized(
    run_feature_store, feast_env, gold_expected, check_results
):
    assert run_feature_store().success
    user = max(gold_expected())
    key = online_layout.entity_key(feast_env.store().project, "user_id", user)
    field = online_layout.feature_field("user_journal_features", "minutes_30d")
    feast_env.redis().hset(key, field, Value(int64_val=-1).SerializeToString())

    broken = check_results(run_feature_store(checks_only=True))["online_matches_gold"]
    assert not broken.passed
    assert broken.metadata["mismatches"].value == 1
    assert f"user_journal_features {user}: minutes_30d is -1 in Redis" in broken.description
    assert "full_refresh" in broken.description

    repaired = run_feature_store(full_refresh=True)
    assert repaired.success
    assert check_results(repaired)["online_matches_gold"].passed


def test_consistency_fails_when_redis_lost_a_row(run_feature_store, feast_env, check_results):
    assert run_feature_store().success
    key = online_layout.entity_key(feast_env.store().project, "user_id", 1)
    feast_env.redis().delete(key)
    broken = check_results(run_feature_store(checks_only=True))["online_matches_gold"]
    assert not broken.passed
    assert "user_journal_features 1: (row) is None in Redis" in broken.description


def test_freshness_compares_the_oldest_served_row_with_the_sla(
    run_feature_store, gold, check_results
):
    assert run_feature_store().success
    within = check_results(run_feature_store(checks_only=True, sla_minutes=60))[
        "online_features_fresh"
    ]
    assert within.passed
    lag = within.metadata["lag_minutes"].value
    assert 5 <= lag < 60  # the gold fixture's newest entry is five minutes old
    late = check_results(run_feature_store(checks_only=True, sla_minutes=1))[
        "online_features_fresh"
    ]
    assert not late.passed
    assert "SLA 1 min" in late.description


def test_one_stale_entity_fails_freshness(run_feature_store, gold, feast_env, check_results):
    """Eleven fresh users do not hide one whose newest served row is two days old."""
    with gold.warehouse.connect() as conn:
        conn.execute(
            "DELETE FROM gold.user_journal_features_history WHERE user_id = 12 AND feature_date > %s",
            [gold.event_time(2).date()],
        )
    assert run_feature_store(full_refresh=True).success
    fresh = check_results(run_feature_store(checks_only=True, sla_minutes=60))[
        "online_features_fresh"
    ]
    assert not fresh.passed
    assert fresh.metadata["lag_minutes"].value > 24 * 60
    assert "oldest user_journal_features row served" in fresh.description


def test_consistency_fails_on_an_orphan_in_redis(run_feature_store, feast_env, check_results):
    """A Redis row whose entity gold does not have is found by sampling Redis keys."""
    assert run_feature_store().success
    client, project = feast_env.redis(), feast_env.store().project
    row = client.hgetall(online_layout.entity_key(project, "user_id", 3))
    client.hset(online_layout.entity_key(project, "user_id", 999), mapping=row)
    broken = check_results(run_feature_store(checks_only=True))["online_matches_gold"]
    assert not broken.passed
    assert "user_journal_features 999: (row) is 'present' in Redis, None in gold" in (
        broken.description
    )
    assert check_results(run_feature_store())["online_matches_gold"].passed, (
        "materialization did not remove the orphan"
    )
    assert not client.exists(online_layout.entity_key(project, "user_id", 999))


def test_freshness_fails_when_redis_serves_nothing(run_feature_store, check_results):
    fresh = check_results(run_feature_store(checks_only=True))["online_features_fresh"]
    assert not fresh.passed
    assert "serves no user_journal_features rows" in fresh.description
