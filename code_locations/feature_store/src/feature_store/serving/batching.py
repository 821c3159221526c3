"""Online reads that start in the same turn of the event loop, made as one read.

Under concurrent requests a server worker holds many reads of the same features at once.
Alone, each pays a whole Redis exchange (a write, a wake-up, a read, the client's steps
around them): about a third of a one-entity request's CPU (130 us of read against 40 us
when 16 share one, measured here). Reads of one feature view's features
that start in the same loop turn go to the online store as one read (one pipeline) and
each gets its own rows back. A read waits for no timer, only for the other
requests already running in the same turn, so a lone request is not slowed.

asyncio has no batching primitive and Feast reads each request alone, hence this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Key = TypeVar("Key")
Row = TypeVar("Row")

# entities gathered into one read at most: a batch this large is read at once, so one large
# request does not make the small ones in its turn wait for a long pipeline behind it
MAX_ENTITIES = 256


class CoalescedReads(Generic[Key, Row]):
    """``read(keys)`` -> one row per key, in order; concurrent calls share reads."""

    def __init__(
        self,
        read: Callable[[list[Key]], Awaitable[Sequence[Row]]],
        max_entities: int = MAX_ENTITIES,
    ) -> None:
        self.read = read
        self.max_entities = max_entities
        self.reads = 0  # reads made (tests check that requests shared them)
        self._pending: list[tuple[Sequence[Key], asyncio.Future[list[Row]]]] = []
        self._entities = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: Sequence[Key]) -> list[Row]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run several): nothing carries over
            self._loop, self._pending, self._entities = loop, [], 0
        if not self._pending:
            loop.call_soon(self._flush)  # after the requests already running in this turn
        future: asyncio.Future[list[Row]] = loop.create_future()
        self._pending.append((keys, future))
        self._entities += len(keys)
        if self._entities >= self.max_entities:
            self._flush()
        return await future

    def _flush(self) -> None:
        batch, self._pending, self._entities = self._pending, [], 0
        if batch:
            task = asyncio.ensure_future(self._read(batch))
            self._running.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._running.discard)

    async def _read(self, batch: list[tuple[Sequence[Key], asyncio.Future[list[Row]]]]) -> None:
        try:
            self.reads += 1
            rows = await self.read([key for keys, _ in batch for key in keys])
            if len(rows) != sum(len(keys) for keys, _ in batch):
                raise RuntimeError(f"the online store returned {len(rows)} rows for the batch")
            start = 0
            for keys, future in batch:
                if not future.done():  # its request may have gone
                    future.set_result(list(rows[start : start + len(keys)]))
                start += len(keys)
        except Exception as error:  # noqa: BLE001 -- each request of the batch fails as a lone read would
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        finally:
            for _, future in batch:
                if not future.done():
                    future.cancel()
