"""Lookups made together are read together: one statement for an outbox claim's callbacks."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from bot import decisions
from bot.domain import Actor, Channel, Outcome
from bot.outbox.coalescing import CoalescingReader
from bot.outbox.dispatcher import GiveUp
from bot.platform.callbacks import CallbackBodies, callback_body
from tests.test_decisions import new_task, rows


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


class _CountingConnections:
    """The real pool, counting how often a connection is taken from it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.acquired = 0

    def acquire(self) -> Any:
        self.acquired += 1
        return self.pool.acquire()


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


async def test_a_claims_callbacks_read_their_audit_rows_in_one_statement(
    pool: asyncpg.Pool,
) -> None:
    for _ in range(12):
        task_id = await new_task(pool)
        await decisions.decide(
            pool,
            task_id=task_id,
            actor=Actor(email="dana@acme.test"),
            outcome=Outcome.APPROVE,
            via=Channel.EMAIL_LINK,
        )
    queued = await rows(pool, "SELECT payload FROM outbox WHERE kind = 'callback' ORDER BY id")
    payloads = [r["payload"] for r in queued]
    assert len(payloads) == 12
    counting = _CountingConnections(pool)
    bodies = CallbackBodies(counting)
    together = await asyncio.gather(*(bodies.body(p) for p in payloads))
    assert counting.acquired == 1
    alone = [await callback_body(pool, p) for p in payloads]
    assert together == alone
    assert {b["type"] for b in together} == {"approval.approved"}
    assert len({b["data"]["id"] for b in together}) == 12


async def test_a_callback_whose_audit_row_is_gone_is_given_up(pool: asyncpg.Pool) -> None:
    with pytest.raises(GiveUp, match="no longer exists"):
        await CallbackBodies(pool).body({"decision_id": 987654321})
    with pytest.raises(GiveUp, match="neither"):
        await CallbackBodies(pool).body({"something": "else"})
