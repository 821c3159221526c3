"""Each fault the upstream can have fails the run with a clear error and writes nothing."""

import re

import pytest

FAULTS = {
    "malformed JSON": (
        {"malformed": "journal_entries"},
        r"/api/v1/journal_entries: page 2 is not valid JSON",
    ),
    "dropped field": (
        {"drop_field": "journal_entries.mood", "fault_record_id": 1150},
        r"/api/v1/journal_entries: record id=1150: field 'mood': Object missing required field",
    ),
    "wrong type": (
        {"wrong_type": "journal_entries.score", "fault_record_id": 1150},
        r"/api/v1/journal_entries: record id=1150: field 'score': Expected `int`, got `str`",
    ),
    "not a timestamp": (
        {"wrong_type": "journal_entries.created_at", "fault_record_id": 1150},
        r"/api/v1/journal_entries: record id=1150: field 'created_at': "
        r"invalid input syntax for type timestamp with time zone",
    ),
    "persistent 5xx": (
        {"error_rate": 1.0},
        r"GET http://127\.0\.0\.1:\d+/api/v1/deletions failed 2 times; last error: HTTP 503",
    ),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_fault_fails_the_run_and_leaves_raw_as_it_was(
    fault, start_journal_api, ingest, raw_snapshot, raw_counts, step_error
):
    api = start_journal_api(users=20, entries=1_000)
    assert ingest(api).success
    before = raw_snapshot()

    api.advance(new_entries=250, changed_entries=20, new_users=3)
    faults, message = FAULTS[fault]
    # the first page of each endpoint is intact, so a failure comes after rows were COPYed
    api.set_faults(fault_after_pages=1, **faults)
    # only the faulty endpoint's asset, so every raw table must come out exactly as before
    selection = ["journal_entries"] if "journal_entries" in str(faults) else None
    result = ingest(api, selection, max_attempts=2)

    assert not result.success
    assert re.search(message, step_error(result)), step_error(result)
    assert raw_snapshot() == before

    # once the upstream is healthy again, the same run loads everything
    api.set_faults()
    assert ingest(api).success
    assert raw_counts()["raw.journal_entries"] == 1_250
