"""Reads started in the same loop turn share one read; each caller gets its own rows.

The read here is a plain async function that records its calls: ``CoalescedReads`` takes any
read, and what these tests check is how it groups calls and hands rows back. The server's
use of it, on a real Redis through Feast, is checked in test_serving_read_path.
"""

import asyncio

import pytest
from feature_store.serving.batching import CoalescedReads


def recording_read(calls: list[list[int]], fail: Exception | None = None):
    async def read(keys: list[int]) -> list[str]:
        calls.append(list(keys))
        await asyncio.sleep(0)  # a real read yields to the loop while Redis answers
        if fail is not None:
            raise fail
        return [f"row {key}" for key in keys]

    return read


def test_concurrent_reads_share_one_read_and_get_their_own_rows():
    calls: list[list[int]] = []
    reads = CoalescedReads(recording_read(calls))

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(reads([i, 100 + i]) for i in range(5)), reads([7]))

    results = asyncio.run(main())
    assert results == [[f"row {i}", f"row {100 + i}"] for i in range(5)] + [["row 7"]]
    assert calls == [[0, 100, 1, 101, 2, 102, 3, 103, 4, 104, 7]]
    assert reads.reads == 1


def test_reads_in_sequence_are_not_held_back():
    calls: list[list[int]] = []
    reads = CoalescedReads(recording_read(calls))

    async def main() -> list[list[str]]:
        return [await reads([1]), await reads([2, 3]), await reads([])]

    assert asyncio.run(main()) == [["row 1"], ["row 2", "row 3"], []]
    assert calls == [[1], [2, 3], []]


def test_a_full_batch_is_read_at_once():
    calls: list[list[int]] = []
    reads = CoalescedReads(recording_read(calls), max_entities=4)

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(reads([i, i]) for i in range(5)))

    assert asyncio.run(main()) == [[f"row {i}"] * 2 for i in range(5)]
    assert calls == [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4]]


def test_a_failed_read_fails_every_caller_of_its_batch_only():
    calls: list[list[int]] = []
    failing = CoalescedReads(recording_read(calls, fail=ConnectionError("redis went away")))

    async def main() -> list[object]:
        return await asyncio.gather(failing([1]), failing([2]), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert [type(outcome) for outcome in outcomes] == [ConnectionError, ConnectionError]
    assert calls == [[1, 2]]


def test_a_caller_that_goes_away_leaves_the_others_their_rows():
    calls: list[list[int]] = []
    reads = CoalescedReads(recording_read(calls))

    async def main() -> list[str]:
        gone = asyncio.ensure_future(reads([1]))
        stays = asyncio.ensure_future(reads([2]))
        await asyncio.sleep(0)  # both are waiting for the batch
        gone.cancel()
        return await stays

    assert asyncio.run(main()) == ["row 2"]
    assert calls == [[1, 2]]


def test_a_read_that_loses_rows_is_an_error():
    async def short(keys: list[int]) -> list[str]:
        return ["only one"]

    reads = CoalescedReads(short)

    async def main() -> list[object]:
        return await asyncio.gather(reads([1]), reads([2]), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    with pytest.raises(RuntimeError, match="returned 1 rows for the batch"):
        raise outcomes[0]  # type: ignore[misc]


def test_each_event_loop_starts_empty():
    """A loop closed with a read pending (a test's, a server's at shutdown) leaves nothing
    behind for the next loop to wait on."""
    calls: list[list[int]] = []
    reads = CoalescedReads(recording_read(calls))

    left: list[asyncio.Future[list[str]]] = []

    async def abandon() -> None:
        left.append(asyncio.ensure_future(reads([1])))  # its batch is never read: the loop stops

    loop = asyncio.new_event_loop()
    loop.run_until_complete(abandon())
    loop.close()
    assert not left[0].done()
    assert asyncio.run(asyncio.wait_for(reads([2]), timeout=10)) == ["row 2"]
