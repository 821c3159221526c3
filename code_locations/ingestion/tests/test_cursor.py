"""The incremental cursor against the real upstream: nothing lost, nothing loaded twice."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import httpx
from ingestion.defs.assets.ingestion.journal_app import journal_app
from ingestion.journal_api import JournalApiResource
from ingestion.records import JournalEntry


def test_late_commits_load_within_the_lookback_window(
    start_journal_api, ingest, raw_counts, assert_raw_is_upstream, metadata
):
    api = start_journal_api(users=10, entries=200)
    api.advance(new_entries=20)  # the upstream's clock moves 20 s past its base rows
    assert ingest(api).success
    # three rows stamped 15 s in the past, committed only now: behind the cursor
    api.advance(new_entries=3, late_seconds=15)

    without_lookback = ingest(api, config={"lookback_seconds": 0})
    assert without_lookback.success
    assert raw_counts()["raw.journal_entries"] == 220  # what a cursor without overlap loses

    with_lookback = ingest(api)
    assert with_lookback.success
    assert raw_counts()["raw.journal_entries"] == 223
    assert metadata(with_lookback, "journal_entries")["inserted"] == 3
    assert_raw_is_upstream(api)


def test_equal_timestamps_across_a_page_boundary_load_exactly_once(
    start_journal_api, ingest, raw_counts, assert_raw_is_upstream, metadata
):
    api = start_journal_api(users=5, entries=50)
    api.advance(new_entries=25, same_stamp=True)  # 25 rows, one updated_at, pages of 10
    first = ingest(api, page_size=10, config={"lookback_seconds": 0})
    assert first.success
    assert raw_counts()["raw.journal_entries"] == 75
    # four more rows with that very timestamp, committed after the read (the cursor's value)
    api.advance(new_entries=4, late_seconds=1, same_stamp=True)

    second = ingest(api, page_size=10, config={"lookback_seconds": 0})
    assert second.success
    entries = metadata(second, "journal_entries")
    assert (entries["fetched"], entries["inserted"], entries["updated"]) == (29, 4, 0)
    assert raw_counts()["raw.journal_entries"] == 79
    assert_raw_is_upstream(api)


class ChangingUpstream(JournalApiResource):
    """The client, with the upstream changing rows after its first pages were read."""

    admin_token: str
    change_after_pages: int = 2

    def fetch(self, record_type: Any, *args: Any, **kwargs: Any) -> Iterator[list[Any]]:
        for number, page in enumerate(super().fetch(record_type, *args, **kwargs), start=1):
            yield page
            if record_type is JournalEntry and number == self.change_after_pages:
                httpx.post(
                    f"{self.base_url}/admin/advance",
                    json={"changed_entries": 40, "new_entries": 5},
                    headers={"Authorization": f"Bearer {self.admin_token}"},
                ).raise_for_status()


def test_rows_changed_between_pages_load_their_newest_version(
    start_journal_api, warehouse, assert_raw_is_upstream
):
    api = start_journal_api(users=10, entries=1_000)
    client = ChangingUpstream(base_url=api.url, page_size=100, admin_token=api.admin_token)
    result = dg.materialize([journal_app], resources={"postgres": warehouse, "journal_api": client})
    assert result.success
    assert_raw_is_upstream(api)  # rows read before they changed, then again after: newest wins


def test_a_repeated_cursor_fails_naming_endpoint_and_cursor(
    start_journal_api, ingest, raw_snapshot, step_error
):
    api = start_journal_api(users=5, entries=300)
    assert ingest(api).success
    before = raw_snapshot()
    api.advance(new_entries=250)
    api.set_faults(repeat_cursor="journal_entries")
    result = ingest(api, ["journal_entries"])
    assert not result.success
    message = step_error(result)
    assert "/api/v1/journal_entries: page 2 returned next_cursor '" in message, message
    assert "a cursor already followed" in message
    assert raw_snapshot() == before

    api.set_faults()
    bounded = ingest(api, ["journal_entries"], max_pages=2)  # 3 pages of 100 are needed
    assert not bounded.success
    assert "/api/v1/journal_entries: more than max_pages=2 pages" in step_error(bounded)
    assert raw_snapshot() == before
    assert ingest(api).success
