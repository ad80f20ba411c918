"""What every channel does with a message it cannot deliver: record why, and say so once."""

from __future__ import annotations

import logging

import asyncpg

from store import deliveries

__all__ = ["give_up"]

log = logging.getLogger("taskjuice.deliveries")


async def give_up(pool: asyncpg.Pool, delivery_id: int, error: str, *, channel: str) -> None:
    """Mark a delivery failed (the task view shows why) and log it as one event."""
    async with pool.acquire() as conn:
        await deliveries.mark_failed(conn, delivery_id, error)
    log.warning(
        "delivery failed",
        extra={"event": f"{channel}.delivery_failed", "delivery": delivery_id, "error": error},
    )
