"""The HTTP client against the development upstream running as a real server process."""

import secrets
import time
from datetime import datetime

import dagster as dg
import pytest
from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.processes import free_port
from ingestion.defs.assets.ingestion.journal_app import journal_app
from ingestion.journal_api import UpstreamUnavailableError
from ingestion.records import JournalEntry, UpstreamError, User


@pytest.fixture
def fetch_all(client_for):
    def fetch(
        api: JournalApiProcess, record_type=JournalEntry, since: datetime | None = None, **client
    ):
        retries: list[str] = []
        pages = list(client_for(api, **client).fetch(record_type, since, on_retry=retries.append))
        return pages, retries

    return fetch


def test_pagination_returns_every_record_once_in_order(start_journal_api, fetch_all):
    api = start_journal_api(users=20, entries=1_234)
    pages, _ = fetch_all(api, page_size=100)
    assert [len(p) for p in pages[:-1]] == [100] * 12 and len(pages[-1]) == 34
    records = [r for page in pages for r in page]
    assert [r.id for r in records] == list(range(1, 1_235))
    stamps = [(datetime.fromisoformat(r.updated_at), r.id) for r in records]
    assert stamps == sorted(stamps)


def test_page_size_does_not_change_the_records(start_journal_api, fetch_all):
    api = start_journal_api(users=20, entries=500)
    small, _ = fetch_all(api, page_size=7)
    large, _ = fetch_all(api, page_size=1_000)
    assert [r for p in small for r in p] == [r for p in large for r in p]


def test_transient_5xx_is_retried_with_backoff(start_journal_api, fetch_all):
    api = start_journal_api(users=5, entries=250)
    api.set_faults(fail_next=3)
    pages, retries = fetch_all(api, page_size=100)
    assert sum(len(p) for p in pages) == 250
    assert len(retries) == 3 and all("HTTP 503" in r for r in retries)


def test_persistent_5xx_gives_up_with_a_clear_error(start_journal_api, fetch_all):
    api = start_journal_api(users=5, entries=10)
    api.set_faults(error_rate=1.0)
    with pytest.raises(
        UpstreamUnavailableError, match=r"/api/v1/users failed 3 times; last error: HTTP 503"
    ):
        fetch_all(api, User, max_attempts=3)


def test_timeouts_are_retried(start_journal_api, fetch_all):
    api = start_journal_api(users=5, entries=10)
    api.set_faults(latency_ms=400)
    with pytest.raises(UpstreamUnavailableError, match="failed 2 times; last error: ReadTimeout"):
        fetch_all(api, timeout_seconds=0.1, max_attempts=2)
    api.set_faults(latency_ms=50)
    pages, retries = fetch_all(api, timeout_seconds=2)
    assert sum(len(p) for p in pages) == 10 and retries == []


def test_client_errors_are_not_retried(start_journal_api, client_for):
    api = start_journal_api(users=5, entries=10)
    client = client_for(api, base_url=f"{api.url}/nowhere")
    with pytest.raises(UpstreamError, match="HTTP 404") as error:
        list(client.fetch(User))
    assert not isinstance(error.value, UpstreamUnavailableError)


def test_incremental_cursor_fetches_only_new_and_changed_rows(start_journal_api, fetch_all):
    api = start_journal_api(users=10, entries=300)
    first, _ = fetch_all(api)
    cursor = max(datetime.fromisoformat(r.updated_at) for p in first for r in p)
    api.advance(new_entries=5, changed_entries=3)
    later, _ = fetch_all(api, since=cursor)
    records = [r for p in later for r in p]
    # the row at the cursor itself comes again (the cursor is inclusive), then 8 changes
    assert len(records) == 1 + 5 + 3
    assert {r.id for r in records if r.id > 300} == {301, 302, 303, 304, 305}
    assert all(datetime.fromisoformat(r.updated_at) >= cursor for r in records)


def test_retry_after_is_honoured(start_journal_api, fetch_all):
    api = start_journal_api(users=5, entries=10)
    api.set_faults(rate_limit_next=1, retry_after_seconds=1)
    started = time.perf_counter()
    pages, retries = fetch_all(api, User, backoff_seconds=0.01)
    assert sum(len(p) for p in pages) == 5
    assert len(retries) == 1 and "HTTP 429" in retries[0] and "retrying in 1.00 s" in retries[0]
    assert time.perf_counter() - started >= 1.0  # not the 0.01 s backoff


def test_a_bearer_token_from_the_environment_is_sent_and_never_logged(
    tmp_path, monkeypatch, warehouse, client_for, step_error
):
    token = secrets.token_hex(16)
    api = JournalApiProcess(
        free_port(), tmp_path / "journal-api.log", {"users": 5, "entries": 20}, read_token=token
    ).start()
    try:
        monkeypatch.delenv("JOURNAL_API_TOKEN", raising=False)
        with pytest.raises(UpstreamError, match="HTTP 401"):
            list(client_for(api).fetch(User))

        monkeypatch.setenv("JOURNAL_API_TOKEN", token)
        assert sum(len(p) for p in client_for(api).fetch(User)) == 5
        api.set_faults(error_rate=1.0)  # a failing run logs its retries and its error
        result = dg.materialize(
            [journal_app],
            resources={"postgres": warehouse, "journal_api": client_for(api, max_attempts=2)},
            raise_on_error=False,
        )
    finally:
        api.stop()
    assert not result.success
    logged = "\n".join(str(event) for event in result.all_events) + step_error(result)
    assert "HTTP 503" in logged and token not in logged
