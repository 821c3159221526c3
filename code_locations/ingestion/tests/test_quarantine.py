"""Quarantine: invalid records set aside per endpoint, the rest loads, a check fails meanwhile."""

import dagster as dg
import psycopg

QUARANTINE = {"quarantine": ["journal_entries"]}


def quarantined(warehouse) -> list[tuple]:
    with psycopg.connect(warehouse.conninfo()) as conn:
        return conn.execute(
            "SELECT id, field, record->>'id' FROM raw.journal_entries_rejected ORDER BY id"
        ).fetchall()


def check_passed(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        evaluation.asset_key.path[-1]: evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }


def test_quarantine_on_sets_bad_records_aside_and_loads_the_rest(
    start_journal_api, ingest, warehouse, raw_counts, assert_raw_is_upstream
):
    api = start_journal_api(users=10, entries=1_000)
    assert ingest(api, config=QUARANTINE).success
    api.advance(new_entries=250)

    # rejected by validation in Python (a wrong type)...
    api.set_faults(wrong_type="journal_entries.score", fault_record_id=1_100)
    result = ingest(api, config=QUARANTINE)
    assert result.success
    assert raw_counts()["raw.journal_entries"] == 1_249
    assert quarantined(warehouse) == [(1_100, "score", "1100")]
    assert check_passed(result) == {
        "api_users": True,
        "get_game_types_from_api": True,
        "journal_entries": False,
    }

    # ...and by Postgres (a timestamp it cannot parse), on another page; record 1100 comes
    # again valid (the look-back re-reads it) and leaves the quarantine
    api.advance(new_entries=100)
    api.set_faults(wrong_type="journal_entries.created_at", fault_record_id=1_300)
    assert ingest(api, config=QUARANTINE).success
    assert quarantined(warehouse) == [(1_300, "created_at", "1300")]
    assert raw_counts()["raw.journal_entries"] == 1_349

    # fixed upstream: the records load (re-read by the look-back) and leave the quarantine
    api.set_faults()
    healed = ingest(api, config=QUARANTINE)
    assert healed.success
    assert quarantined(warehouse) == []
    assert check_passed(healed)["journal_entries"] is True
    assert_raw_is_upstream(api)


def test_quarantine_off_fails_naming_the_record_and_writes_nothing(
    start_journal_api, ingest, warehouse, raw_snapshot, step_error
):
    api = start_journal_api(users=10, entries=1_000)
    assert ingest(api).success
    before = raw_snapshot()
    api.advance(new_entries=250)
    api.set_faults(wrong_type="journal_entries.score", fault_record_id=1_100)
    # quarantine on for another endpoint changes nothing for this one
    result = ingest(api, config={"quarantine": ["users"]})
    assert not result.success
    assert "/api/v1/journal_entries: record id=1100: field 'score'" in step_error(result)
    assert raw_snapshot() == before
    assert quarantined(warehouse) == []


def test_quarantine_of_an_unknown_endpoint_is_refused(start_journal_api, ingest, step_error):
    api = start_journal_api(users=5, entries=10)
    result = ingest(api, config={"quarantine": ["journal_entry"]})
    assert not result.success
    assert "quarantine names unknown endpoint(s) ['journal_entry']" in step_error(result)
