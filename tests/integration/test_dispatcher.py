"""The outbox dispatcher's slots: an item waiting for its turn gives its slot back."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from bot.outbox.dispatcher import Dispatcher, lease_left, waiting
from bot.runtime.metrics import Metrics
from store import outbox
from store.outbox import OutboxItem
from tests.support import eventually


async def test_an_item_waiting_for_its_turn_leaves_its_slot_to_others(
    pool: asyncpg.Pool, database_url: str
) -> None:
    turn = asyncio.Event()
    sent: list[str] = []

    async def waits(item: OutboxItem) -> None:
        with waiting():  # as for a permit or another caller's lookup
            await turn.wait()
        sent.append("waited")

    async def works(item: OutboxItem) -> None:
        sent.append("worked")

    dispatcher = Dispatcher(
        pool=pool,
        database_url=database_url,
        handlers={"test.waits": waits, "test.works": works},
        metrics=Metrics(),
        concurrency=1,
        waiting_room=1,
    )
    async with pool.acquire() as conn:
        await outbox.enqueue(conn, "test.waits", {})
        await outbox.enqueue(conn, "test.works", {})
    running = asyncio.create_task(dispatcher.run())
    try:
        # One slot: the second item is sent while the first still waits for its turn.
        await eventually(lambda: sent == ["worked"], what="the second item sent")
        turn.set()
        await eventually(lambda: sent == ["worked", "waited"], what="the first item sent")
    finally:
        dispatcher.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, timeout=15)


async def test_an_item_still_being_sent_is_not_sent_again_when_its_claim_runs_out(
    pool: asyncpg.Pool, database_url: str
) -> None:
    # A send that outlasts its claim: the item falls due again, and this dispatcher claims it
    # again; it must not start a second send beside the first (a post would go twice).
    runs: list[float] = []
    finish = asyncio.Event()

    async def slow(item: OutboxItem) -> None:
        runs.append(lease_left())
        await finish.wait()

    dispatcher = Dispatcher(
        pool=pool,
        database_url=database_url,
        handlers={"test.slow": slow},
        metrics=Metrics(),
        lease=0.5,
        poll_interval=0.05,
    )
    async with pool.acquire() as conn:
        await outbox.enqueue(conn, "test.slow", {})

    async def claimed_twice() -> bool:
        async with pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT attempts >= 2 FROM outbox"))

    running = asyncio.create_task(dispatcher.run())
    try:
        await eventually(claimed_twice, what="the item claimed again after its lease")
        assert len(runs) == 1 and 0 < runs[0] <= 0.5
        finish.set()

        async def done() -> bool:
            async with pool.acquire() as conn:
                return bool(await conn.fetchval("SELECT status = 'done' FROM outbox"))

        await eventually(done, what="the one send recorded")
        assert len(runs) == 1
    finally:
        dispatcher.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, timeout=15)
