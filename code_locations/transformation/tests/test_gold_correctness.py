"""The gold tables equal an independent computation in plain Python over the same raw rows,
after a full build and after an incremental build on new and changed entries."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

DAY = timedelta(days=1)
Key = tuple[int, date]


def _mean(values: list[int]) -> float | None:
    return sum(values) / len(values) if values else None


SKEW = timedelta(minutes=5)


def expected_gold(
    entries: Sequence[Mapping[str, Any]],
    game_types: Mapping[int, Mapping[str, Any]],
    as_of_timestamp: datetime,
) -> tuple[dict[Key, dict[str, Any]], dict[Key, dict[str, Any]]]:
    """The gold contract, day by day, from raw entries (no SQL, no shared code with dbt).

    Rows run through the as-of date; an entry dated after its ingestion is quarantined; a
    streak counts while its last day is the row's day or the day before.
    """
    by_user: dict[Key, list[Mapping[str, Any]]] = defaultdict(list)
    by_type: dict[Key, list[Mapping[str, Any]]] = defaultdict(list)
    for entry in entries:
        if entry["created_at"] > entry["_ingested_at"] + SKEW:
            continue
        day = entry["created_at"].astimezone(UTC).date()
        by_user[(entry["user_id"], day)].append(entry)
        by_type[(entry["game_type_id"], day)].append(entry)
    as_of = as_of_timestamp.astimezone(UTC).date()

    def stamp(day: date) -> datetime:
        return min(datetime(day.year, day.month, day.day, tzinfo=UTC) + DAY, as_of_timestamp)

    def window(index: Mapping[Key, list[Any]], key: int, day: date, days: int) -> list[Any]:
        return [e for back in range(days) for e in index.get((key, day - back * DAY), [])]

    first_days: dict[int, date] = {}
    for user, day in by_user:
        first_days[user] = min(first_days.get(user, day), day)
    features = {}
    for user, day in first_days.items():
        last_entry, run, streak = day, 0, 0
        while day <= as_of:
            if by_user.get((user, day)):
                last_entry, run = day, run + 1
                streak = run
            else:
                streak = run  # yesterday's run is still alive today; gone the day after
                run = 0
            month = window(by_user, user, day, 30)
            counts = Counter(e["game_type_id"] for e in month)
            favorite = min(counts, key=lambda t: (-counts[t], t)) if counts else None
            features[(user, day)] = {
                "event_timestamp": stamp(day),
                "entries_7d": len(window(by_user, user, day, 7)),
                "entries_30d": len(month),
                "avg_mood_30d": _mean([e["mood"] for e in month]),
                "avg_score_30d": _mean([e["score"] for e in month]),
                "minutes_30d": sum(e["duration_minutes"] for e in month),
                "favorite_game_type": game_types[favorite]["name"] if favorite else None,
                "days_since_last_entry": (day - last_entry).days,
                "current_streak_days": streak,
            }
            day += DAY
    stats = {}
    for type_id, game_type in game_types.items():
        day = min(first_days.values())
        while day <= as_of:
            month = window(by_type, type_id, day, 30)
            stats[(type_id, day)] = {
                "game_type_name": game_type["name"],
                "category": game_type["category"],
                "event_timestamp": stamp(day),
                "entries_1d": len(by_type.get((type_id, day), [])),
                "entries_30d": len(month),
                "active_users_30d": len({e["user_id"] for e in month}),
                "avg_score_30d": _mean([e["score"] for e in month]),
                "avg_mood_30d": _mean([e["mood"] for e in month]),
                "avg_duration_minutes_30d": _mean([e["duration_minutes"] for e in month]),
            }
            day += DAY
    return features, stats


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, float):
        return math.isclose(expected, actual, rel_tol=1e-9)
    return bool(expected == actual) and type(expected) is type(actual)


def differences(
    expected: Mapping[Key, Mapping[str, Any]], actual: Mapping[Key, Mapping[str, Any]]
) -> list[str]:
    problems = [f"missing row {key}" for key in sorted(expected.keys() - actual.keys())]
    problems += [f"unexpected row {key}" for key in sorted(actual.keys() - expected.keys())]
    for key in sorted(expected.keys() & actual.keys()):
        for column, value in expected[key].items():
            if not _same(value, actual[key][column]):
                problems.append(
                    f"{key} {column}: expected {value!r}, dbt wrote {actual[key][column]!r}"
                )
    return problems


def check_gold(rows: Callable[[str], list[dict[str, Any]]], built_after: datetime) -> None:
    entries = rows("SELECT * FROM raw.journal_entries")
    game_types = {r["id"]: r for r in rows("SELECT * FROM raw.game_types")}
    # the build's as-of time is its start (no var given): today's row carries it
    (as_of,) = rows("SELECT max(event_timestamp) AS at FROM gold.user_journal_features")
    assert built_after <= as_of["at"] <= datetime.now(UTC)
    features, stats = expected_gold(entries, game_types, as_of["at"])
    actual_features = {
        (r["user_id"], r["feature_date"]): r
        for r in rows("SELECT * FROM gold.user_journal_features")
    }
    actual_stats = {
        (r["game_type_id"], r["feature_date"]): r
        for r in rows("SELECT * FROM gold.game_type_stats")
    }
    problems = differences(features, actual_features) + differences(stats, actual_stats)
    assert not problems, f"{len(problems)} differences, first ones:\n" + "\n".join(problems[:15])
    assert len(actual_features) > 1_000 and len(actual_stats) > 500


def all_checks_passed(result: dg.ExecuteInProcessResult) -> None:
    evaluations = result.get_asset_check_evaluations()
    failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed]
    assert not failed, f"dbt tests failed: {failed}"
    on_sources = {e.asset_key for e in evaluations} & {dg.AssetKey("journal_entries")}
    assert on_sources, "the dbt tests on the raw sources did not run as asset checks"


def test_gold_matches_python_after_full_and_incremental_builds(
    start_journal_api, ingest, build_gold, rows
) -> None:
    api = start_journal_api(users=60, entries=6_000)
    ingest(api)
    started = datetime.now(UTC)
    first = build_gold()
    all_checks_passed(first)
    check_gold(rows, started)
    (first_build,) = rows(
        "SELECT max(updated_at) AS at, max(feature_date) AS as_of FROM gold.user_journal_features"
    )

    api.advance(new_entries=200, changed_entries=30, new_users=3)
    ingest(api)
    started = datetime.now(UTC)
    second = build_gold()
    all_checks_passed(second)
    check_gold(rows, started)

    (touched,) = rows(
        "SELECT min(least(from_date, to_date)) AS since FROM staging.journal_entry_changes "
        f"WHERE logged_at > '{first_build['at'].isoformat()}'"
    )
    recompute_from = min(touched["since"], first_build["as_of"])
    by_write = rows(
        "SELECT feature_date >= %s AS recomputed, min(updated_at) AS first_write, "
        "max(updated_at) AS last_write, count(*) AS n FROM gold.user_journal_features GROUP BY 1".replace(
            "%s", f"'{recompute_from}'"
        )
    )
    kept = next(r for r in by_write if not r["recomputed"])
    rebuilt = next(r for r in by_write if r["recomputed"])
    assert kept["last_write"] <= first_build["at"], "rows before the affected dates were rewritten"
    assert rebuilt["first_write"] > first_build["at"], "affected rows were not recomputed"
    assert kept["n"] > 0 and rebuilt["n"] > 0


def test_gold_is_indexed_for_feasts_queries(raw_tables, build_gold, rows) -> None:
    """Feast filters the history tables on event_timestamp (materialization) and on entity +
    event_timestamp (training data): both are indexed, so neither scans all history. The daily
    tables, which Feast does not read, carry neither: each build rewrites a day of their rows."""
    assert build_gold().success
    indexes = {
        (r["tablename"], r["indexdef"].split("USING btree ")[1])
        for r in rows("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'gold'")
    }
    for table, key in (("user_journal_features", "user_id"), ("game_type_stats", "game_type_id")):
        assert (f"{table}_history", "(event_timestamp)") in indexes
        assert (f"{table}_history", f"({key}, event_timestamp)") in indexes
        assert not {(table, "(event_timestamp)"), (table, f"({key}, event_timestamp)")} & indexes
