"""JournalApiResource: the journal app's REST API, paginated, incremental and retried."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import dagster as dg
import httpx
import msgspec

from ingestion.records import MalformedPageError, Record, UpstreamError, decode_page, endpoint_path

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class UpstreamUnavailableError(UpstreamError):
    """The API kept failing after every retry."""


class _Cursor(msgspec.Struct):
    next_cursor: str | None = None


class JournalApiResource(dg.ConfigurableResource):
    """Reads one endpoint page by page, keyset-paginated, from an ``updated_since`` cursor."""

    base_url: str
    page_size: int = 10_000
    timeout_seconds: float = 30.0
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0

    def _get(
        self,
        client: httpx.Client,
        url: str,
        params: dict[str, Any],
        on_retry: Callable[[str], None],
    ) -> bytes:
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = client.get(url, params=params)
            except httpx.TransportError as error:  # timeouts, refused or reset connections
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 400:
                    return response.content
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRYABLE_STATUS:
                    raise UpstreamError(f"GET {response.url} failed with {problem}")
            if attempt == self.max_attempts:
                raise UpstreamUnavailableError(
                    f"GET {url} failed {self.max_attempts} times; last error: {problem}. "
                    "The upstream API is down or overloaded: retry the run later."
                )
            delay = min(self.backoff_seconds * 2 ** (attempt - 1), self.backoff_max_seconds)
            delay *= random.uniform(0.5, 1.0)  # jitter: many clients must not retry in step
            on_retry(f"GET {url} attempt {attempt} failed ({problem}); retrying in {delay:.2f} s")
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _bodies(
        self, endpoint: str, updated_since: datetime | None, on_retry: Callable[[str], None]
    ) -> Iterator[bytes]:
        url = f"{self.base_url.rstrip('/')}/api/v1/{endpoint}"
        params: dict[str, Any] = {"limit": self.page_size}
        if updated_since is not None:
            params["updated_since"] = updated_since.isoformat()
        with httpx.Client(timeout=self.timeout_seconds) as client:
            while True:
                body = self._get(client, url, params, on_retry)
                yield body
                try:
                    cursor = msgspec.json.decode(body, type=_Cursor).next_cursor
                except (msgspec.DecodeError, msgspec.ValidationError):
                    return  # the consumer decodes this page too and reports it
                if cursor is None:
                    return
                params["cursor"] = cursor

    def fetch(
        self,
        record_type: type[Record],
        updated_since: datetime | None = None,
        on_retry: Callable[[str], None] = lambda message: None,
    ) -> Iterator[list[Any]]:
        """Validated pages of records; the next page downloads while this one is loaded."""
        endpoint = endpoint_path(record_type)
        bodies = _prefetch(self._bodies(record_type.endpoint, updated_since, on_retry))
        for number, body in enumerate(bodies, start=1):
            records, _ = decode_page(body, record_type, endpoint, number)
            yield records


_DONE = object()


def _prefetch(source: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
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


__all__ = ["JournalApiResource", "MalformedPageError", "UpstreamUnavailableError"]
