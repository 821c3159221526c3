"""What the features mean at the edges: a streak alive after midnight, recency that grows
without new entries, a future-dated entry quarantined by a failing check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DAY = timedelta(days=1)


def test_rows_age_streaks_stay_alive_and_future_entries_are_quarantined(
    raw_tables, build_gold, rows
) -> None:
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = midnight.date()
    plays = {
        1: [midnight - 2 * DAY, midnight - DAY],  # played yesterday: the streak is alive today
        2: [midnight - 3 * DAY, midnight - 2 * DAY],  # last played two days ago: over
        3: [midnight - 40 * DAY],  # long gone: still a row today, older than any window
    }
    with raw_tables.connect() as conn:
        conn.execute(
            "INSERT INTO raw.game_types (id, created_at, updated_at, name, category) "
            "VALUES (1, now(), now(), 'chess', 'strategy')"
        )
        for user in (1, 2, 3):
            conn.execute(
                "INSERT INTO raw.users (id, created_at, updated_at, name, email) "
                "VALUES (%s, now(), now(), %s, %s)",
                [user, f"user {user}", f"u{user}@example.com"],
            )
        entries = [(user, at + timedelta(hours=10)) for user, ats in plays.items() for at in ats]
        entries.append((1, now + 3 * DAY))  # dated three days after it was ingested
        for entry_id, (user, at) in enumerate(entries, start=1):
            conn.execute(
                "INSERT INTO raw.journal_entries (id, created_at, updated_at, user_id, "
                "game_type_id, duration_minutes, score, mood) VALUES (%s, %s, %s, %s, 1, 10, "
                "100, 3)",
                [entry_id, at, at, user],
            )

    result = build_gold()
    assert result.success
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"not_quarantined_stg_journal_entries_is_future_dated"}

    features = {
        (r["user_id"], r["feature_date"]): r
        for r in rows("SELECT * FROM gold.user_journal_features")
    }
    assert max(day for _, day in features) == today, "a future-dated entry made future rows"
    (stats,) = rows(
        "SELECT max(feature_date) AS last, max(event_timestamp) AS at FROM gold.game_type_stats"
    )
    assert stats["last"] == today and now <= stats["at"] <= datetime.now(UTC)

    def on(user: int, day: datetime) -> tuple[int, int, int]:
        row = features[(user, day.date())]
        return row["current_streak_days"], row["days_since_last_entry"], row["entries_7d"]

    # (streak, days since the last entry, entries in 7 days)
    assert on(1, midnight - DAY) == (2, 0, 2)
    assert on(1, midnight) == (2, 1, 2), "the streak dropped to 0 at midnight"
    assert on(2, midnight - DAY) == (2, 1, 2)
    assert on(2, midnight) == (0, 2, 2)
    assert on(3, midnight) == (0, 40, 0)
    gone = features[(3, today)]
    assert gone["entries_30d"] == 0 and gone["avg_mood_30d"] is None
    assert gone["favorite_game_type"] is None
    assert features[(1, today)]["event_timestamp"] == stats["at"], "one as-of time per build"


def test_overlapping_builds_wait_for_each_other(raw_tables, build_gold, rows) -> None:
    """A build started while another holds the warehouse's build lock waits, then builds."""
    import threading

    from data_platform_dev.stack.processes import wait_until
    from transformation.build_lock import BUILD_LOCK_KEY, dbt_build_lock

    def waiting() -> bool:
        (row,) = rows(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            f"AND ((classid::bigint << 32) | objid::bigint) = {BUILD_LOCK_KEY}"
        )
        return bool(row["n"])

    outcome = {}
    with dbt_build_lock(raw_tables):
        worker = threading.Thread(target=lambda: outcome.update(result=build_gold()))
        worker.start()
        wait_until(waiting, "the second build to wait for the lock", timeout=120)
        assert not rows("SELECT 1 FROM pg_tables WHERE schemaname = 'gold'")
    worker.join(timeout=300)
    assert outcome["result"].success
    assert rows("SELECT 1 FROM pg_tables WHERE schemaname = 'gold'")
