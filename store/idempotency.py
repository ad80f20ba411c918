"""Idempotency keys: the first request with a key wins; retries replay its response."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["EarlierRequest", "claim", "complete", "forget_older_than"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlierRequest:
    """A request already made with the same key."""

    request_hash: str
    status: int | None
    response: Any


async def claim(
    conn: asyncpg.Connection, scope: str, key: str, request_hash: str
) -> EarlierRequest | None:
    """Take the key in the caller's transaction, or return the request that took it.

    A concurrent request with the same key waits here until the first one commits.
    """
    took = await conn.fetchval(
        "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)"
        " ON CONFLICT (scope, key) DO NOTHING RETURNING true",
        scope,
        key,
        request_hash,
    )
    if took:
        return None
    row = await conn.fetchrow(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = $1 AND key = $2",
        scope,
        key,
    )
    return EarlierRequest(**dict(row))


async def complete(
    conn: asyncpg.Connection, scope: str, key: str, status: int, response: Any
) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status = $3, response = $4 WHERE scope = $1 AND key = $2",
        scope,
        key,
        status,
        response,
    )


async def forget_older_than(conn: asyncpg.Connection, seconds: float) -> int:
    """Drop keys older than the replay window; returns how many."""
    result: str = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        seconds,
    )
    return int(result.split()[-1])
