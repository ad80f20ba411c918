"""What readiness and the metrics scrape ask of the database."""

from __future__ import annotations

import asyncpg

from store import outbox
from store.outbox import OutboxStats
from store.readiness import oldest_due_age

__all__ = ["OutboxStats", "check_database", "outbox_stats"]


async def check_database(pool: asyncpg.Pool, *, outbox_age: bool) -> float | None:
    """Raises when the database does not answer; with `outbox_age`, returns how long (in
    seconds) the oldest outbox item a dispatcher could claim now has been due."""
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
        return await oldest_due_age(conn) if outbox_age else None


async def outbox_stats(pool: asyncpg.Pool) -> OutboxStats:
    """The outbox's depth, oldest pending age and dead letters, for the gauges."""
    async with pool.acquire() as conn:
        return await outbox.stats(conn)
