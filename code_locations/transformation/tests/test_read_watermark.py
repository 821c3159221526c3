"""stg_journal_entries reads raw from a watermark, not from the last hour: a load that began
before a build and commits after it is still merged by the next build, and with nothing else
open the next build reads only what arrived after this one read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

INSERT_ENTRY = (
    "INSERT INTO raw.journal_entries (id, created_at, updated_at, user_id, game_type_id, "
    "duration_minutes, score, mood) VALUES (%s, %s, %s, 1, 1, 10, 100, 3)"
)


def _staged(conn: psycopg.Connection) -> set[int]:
    return {i for (i,) in conn.execute("SELECT entry_id FROM staging.stg_journal_entries")}


def _read_from(conn: psycopg.Connection) -> datetime:
    (read_from,) = conn.execute(
        "SELECT read_from FROM staging.read_watermarks WHERE model = 'stg_journal_entries'"
    ).fetchone() or (None,)
    assert read_from is not None, "the build noted no watermark"
    return read_from  # type: ignore[no-any-return]


def test_a_load_committed_after_a_build_is_merged_by_the_next(chess_player, build_gold) -> None:
    raw_tables = chess_player
    played = datetime.now(UTC) - timedelta(hours=3)
    with raw_tables.connect() as conn:
        conn.execute(INSERT_ENTRY, [1, played, played])
    assert build_gold().success

    with raw_tables.connect() as conn:
        first_read = _read_from(conn)
    # a load's transaction: it starts (its rows are stamped with this moment), then a build
    # runs while it is still open, then it commits
    late = psycopg.connect(raw_tables.conninfo())
    try:
        (late_started,) = late.execute("SELECT now()").fetchone() or (None,)
        late.execute(INSERT_ENTRY, [2, played, played])
        with raw_tables.connect() as conn:
            conn.execute(INSERT_ENTRY, [3, played, played])  # committed before the build
        assert build_gold().success
        with raw_tables.connect() as conn:
            assert _staged(conn) == {1, 3}, "the build saw only what was committed"
            second_read = _read_from(conn)
        assert first_read < second_read <= late_started, (
            f"the watermark {second_read} is after the open load's start {late_started}: "
            "its rows would never be read"
        )
        late.commit()
    finally:
        late.close()

    assert build_gold().success
    with raw_tables.connect() as conn:
        assert _staged(conn) == {1, 2, 3}, "the late load's entry was skipped"
        (gold_entries,) = conn.execute(
            "SELECT entries_30d FROM gold.user_journal_features "
            "WHERE feature_date = (SELECT max(feature_date) FROM gold.user_journal_features)"
        ).fetchone() or (None,)
        assert gold_entries == 3
        third_read = _read_from(conn)
        (now,) = conn.execute("SELECT now()").fetchone() or (None,)
    # nothing else was open: the next build reads from this build's own read, not an hour back
    assert second_read < third_read <= now
    assert now - third_read < timedelta(minutes=5)
