"""Lookups made together are read together: one statement for an outbox claim's callbacks."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from bot.domain import Actor, Channel
from bot.outbox.dispatcher import GiveUp
from bot.platform.callbacks import CallbackBodies, callback_body
from tests.conftest import TaskFactory
from tests.integration.test_decisions import rows
from tests.support import vote


class _CountingConnections:
    """The real pool, counting how often a connection is taken from it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.acquired = 0

    def acquire(self) -> Any:
        self.acquired += 1
        return self.pool.acquire()


async def test_a_claims_callbacks_read_their_audit_rows_in_one_statement(
    pool: asyncpg.Pool, task_factory: TaskFactory
) -> None:
    for _ in range(12):
        task_id = await task_factory.stored()
        await vote(pool, task_id, Actor(email="dana@acme.test"), via=Channel.EMAIL_LINK)
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
