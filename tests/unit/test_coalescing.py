"""Lookups made together are read together: the coalescing reader on its own."""

from __future__ import annotations

import asyncio

import pytest

from bot.outbox.coalescing import CoalescingReader


class _Squares:
    """A fetch that answers squares of the keys it is asked for, and remembers each call."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()  # cleared: a read waits until the test lets it finish
        self.gate.set()
        self.asked = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, keys: list[int]) -> dict[int, int]:
        self.calls.append(keys)
        self.asked.set()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {key: key * key for key in keys if key >= 0}


async def test_lookups_made_together_are_one_read_and_later_ones_the_next() -> None:
    fetch = _Squares()
    reader: CoalescingReader[int, int] = CoalescingReader(fetch)
    fetch.gate.clear()
    first = [asyncio.create_task(reader.get(key)) for key in (1, 2, 2, 3, -1)]
    await asyncio.wait_for(fetch.asked.wait(), 5)
    later = [asyncio.create_task(reader.get(key)) for key in (4, 5)]
    fetch.gate.set()
    assert await asyncio.gather(*first) == [1, 4, 4, 9, None]  # an unanswered key reads None
    assert await asyncio.gather(*later) == [16, 25]
    assert fetch.calls == [[1, 2, 3, -1], [4, 5]]  # each key asked once per read


async def test_a_failed_read_fails_its_lookups_and_the_next_read_is_fresh() -> None:
    fetch = _Squares()
    reader: CoalescingReader[int, int] = CoalescingReader(fetch)
    fetch.fail = ConnectionResetError("database away")
    results = await asyncio.gather(reader.get(1), reader.get(2), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionResetError, ConnectionResetError]
    fetch.fail = None
    assert await reader.get(3) == 9
    assert fetch.calls == [[1, 2], [3]]


async def test_a_cancelled_lookup_leaves_the_others_answered() -> None:
    fetch = _Squares()
    reader: CoalescingReader[int, int] = CoalescingReader(fetch)
    fetch.gate.clear()
    kept, dropped = asyncio.create_task(reader.get(6)), asyncio.create_task(reader.get(7))
    await asyncio.wait_for(fetch.asked.wait(), 5)
    dropped.cancel()
    fetch.gate.set()
    assert await kept == 36
    with pytest.raises(asyncio.CancelledError):
        await dropped
