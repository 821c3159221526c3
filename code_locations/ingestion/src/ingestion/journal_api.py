"""JournalApiResource: the journal app's REST API, paginated, incremental and retried.

Deletions come from the upstream's tombstone feed, ``GET /api/v1/deletions`` (records
{entity, id, deleted_at}, keyset-paginated like the other endpoints), read with the same
client. A bearer token, when JOURNAL_API_TOKEN is set (a Kubernetes Secret in production),
goes with every request; it is read when a fetch starts and never logged.
"""

from __future__ import annotations

import os
import queue
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import dagster as dg
import httpx
import msgspec
import tenacity
from data_platform import settings

from ingestion.records import (
    MalformedPageError,
    Page,
    Rejected,
    UpstreamError,
    decode_page,
    decode_page_lenient,
    endpoint_path,
)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
TOKEN_ENV = settings.JOURNAL_API_TOKEN


class UpstreamUnavailableError(UpstreamError):
    """The API kept failing after every retry."""


class PaginationError(UpstreamError):
    """The upstream's cursors would page forever: a repeated cursor, or too many pages."""


class _Retryable(Exception):
    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


class _Cursor(msgspec.Struct):
    next_cursor: str | None = None


class _Probe(msgspec.Struct):
    data: list[msgspec.Raw]


def _headers() -> dict[str, str]:
    """The bearer token, read when a request starts (never at import, never logged)."""
    token = os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (Retry-After: seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((moment - datetime.now(UTC)).total_seconds(), 0.0)


class JournalApiResource(dg.ConfigurableResource):
    """Reads one endpoint page by page, keyset-paginated, from an ``updated_since`` cursor."""

    base_url: str
    page_size: int = 10_000
    timeout_seconds: float = 30.0
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    retry_after_max_seconds: float = 300.0  # a longer Retry-After is cut to this
    max_pages: int = 100_000  # per fetch: a billion rows at the default page size

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Retry-After when the server sent one, else exponential backoff with jitter."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            return min(error.retry_after, self.retry_after_max_seconds)
        delay = min(
            self.backoff_seconds * 2 ** (state.attempt_number - 1), self.backoff_max_seconds
        )
        return delay * random.uniform(0.5, 1.0)  # jitter: many clients must not retry in step

    def _get(
        self,
        client: httpx.Client,
        url: str,
        params: dict[str, Any],
        on_retry: Callable[[str], None],
    ) -> bytes:
        def attempt() -> bytes:
            try:
                response = client.get(url, params=params)
            except httpx.TransportError as error:  # timeouts, refused or reset connections
                raise _Retryable(f"{type(error).__name__}: {error}") from error
            if response.status_code < 400:
                return response.content
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code in RETRYABLE_STATUS:
                raise _Retryable(problem, _retry_after(response))
            raise UpstreamError(f"GET {response.url} failed with {problem}")

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            on_retry(
                f"GET {url} attempt {state.attempt_number} failed ({error}); "
                f"retrying in {delay:.2f} s"
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as error:
            raise UpstreamUnavailableError(
                f"GET {url} failed {self.max_attempts} times; last error: {error}. "
                "The upstream API is down or overloaded: retry the run later."
            ) from error

    def _bodies(
        self, endpoint: str, updated_since: datetime | None, on_retry: Callable[[str], None]
    ) -> Iterator[tuple[bytes, datetime]]:
        url = f"{self.base_url.rstrip('/')}/api/v1/{endpoint}"
        params: dict[str, Any] = {"limit": self.page_size}
        if updated_since is not None:
            params["updated_since"] = updated_since.isoformat()
        seen: set[str] = set()
        with httpx.Client(timeout=self.timeout_seconds, headers=_headers()) as client:
            for page in range(1, self.max_pages + 1):
                body = self._get(client, url, params, on_retry)
                yield body, datetime.now(UTC)  # when this page was read: see records.Page
                try:
                    cursor = msgspec.json.decode(body, type=_Cursor).next_cursor
                except (msgspec.DecodeError, msgspec.ValidationError):
                    return  # the consumer decodes this page too and reports it
                if cursor is None:
                    return
                if cursor in seen:
                    raise PaginationError(
                        f"/api/v1/{endpoint}: page {page} returned next_cursor {cursor!r}, "
                        f"a cursor already followed (from updated_since {updated_since}); the "
                        "upstream would page forever. Nothing from this batch was written."
                    )
                seen.add(cursor)
                params["cursor"] = cursor
            raise PaginationError(
                f"/api/v1/{endpoint}: more than max_pages={self.max_pages} pages of "
                f"{self.page_size} from updated_since {updated_since} (last cursor "
                f"{params.get('cursor')!r}); more than can exist: the upstream's cursors loop. "
                "Nothing from this batch was written."
            )

    def changed_after(self, endpoint: str, after: datetime | None, timeout: float = 5.0) -> bool:
        """Has ``endpoint`` a row stamped after ``after``? One request for at most one row
        (``updated_since`` is inclusive, so the probe starts a microsecond later), no retry:
        a sensor asks again at its next tick."""
        params: dict[str, Any] = {"limit": 1}
        if after is not None:
            params["updated_since"] = (after + timedelta(microseconds=1)).isoformat()
        url = f"{self.base_url.rstrip('/')}/api/v1/{endpoint}"
        try:
            response = httpx.get(url, params=params, headers=_headers(), timeout=timeout)
        except httpx.TransportError as error:
            raise UpstreamUnavailableError(f"GET {url}: {type(error).__name__}: {error}") from error
        if response.status_code >= 400:
            raise UpstreamError(f"GET {response.url} failed with HTTP {response.status_code}")
        try:
            return bool(msgspec.json.decode(response.content, type=_Probe).data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise MalformedPageError(f"/api/v1/{endpoint}", 1, str(error)) from error

    def fetch(
        self,
        record_type: type[msgspec.Struct],
        updated_since: datetime | None = None,
        on_retry: Callable[[str], None] = lambda message: None,
        on_rejected: Callable[[list[Rejected]], None] | None = None,
    ) -> Iterator[list[Any]]:
        """Validated pages of records, each with the moment its response arrived (``Page``);
        the next page downloads while this one is loaded.

        A record that fails validation fails the fetch, naming it; with ``on_rejected``
        (quarantine) it is handed there instead and the rest of its page comes through.
        """
        endpoint = endpoint_path(record_type)  # type: ignore[arg-type]
        name: str = record_type.endpoint  # type: ignore[attr-defined]
        bodies = _prefetch(self._bodies(name, updated_since, on_retry))
        for number, (body, read_at) in enumerate(bodies, start=1):
            if on_rejected is None:
                records, _ = decode_page(body, record_type, endpoint, number)
            else:
                records, rejected = decode_page_lenient(body, record_type, endpoint, number)
                if rejected:
                    on_rejected(rejected)
            yield Page(records, read_at)


_DONE = object()


def _prefetch(source: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``source`` in a thread, ``depth`` items ahead; its errors surface in the consumer."""
    items: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            put(error)
        finally:
            source.close()  # type: ignore[attr-defined]

    thread = threading.Thread(target=produce, daemon=True, name="journal-api-prefetch")
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


__all__ = [
    "JournalApiResource",
    "MalformedPageError",
    "PaginationError",
    "UpstreamUnavailableError",
]
