"""Online features survive a Redis restart: the local stack's Redis persists an append-only file."""

from data_platform_dev.stack.processes import wait_until


def test_restarted_redis_serves_the_same_features(
    run_feature_store, redis_server, gold_expected, online_rows
):
    assert run_feature_store().success
    expected = gold_expected()
    assert online_rows(list(expected)) == expected
    redis_server.stop()
    redis_server.start()
    wait_until(lambda: bool(redis_server.client().ping()), "redis after restart", timeout=30)
    assert online_rows(list(expected)) == expected
