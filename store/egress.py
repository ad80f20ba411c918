"""The Slack egress budget shared by every replica (migrations 0014, 0020)."""

from __future__ import annotations

from typing import NamedTuple

import asyncpg

__all__ = ["Lease", "block", "take"]


class Lease(NamedTuple):
    """What one ask of the budget got: permits granted, or (none) the seconds until the
    caller's slot, or until a 429's block ends."""

    granted: int
    wait: float


async def take(
    conn: asyncpg.Connection,
    team: str,
    scope: str,
    *,
    count: int,
    window: float,
    want: int,
    priority: int = 0,
    item: int | None = None,
) -> Lease:
    """Up to `want` permits of (team, scope), keeping at most `count` granted in any window of
    `window` seconds. When none are granted, the caller (outbox `item`, if it is one) is
    promised a slot: the next one not promised to a caller of `priority` or more urgent, or
    the one it was promised before, if that is still ahead."""
    row = await conn.fetchrow(
        "SELECT granted, wait FROM taskjuice_slack_permits($1, $2, $3, $4, $5, $6, $7)",
        team,
        scope,
        count,
        window,
        want,
        priority,
        item,
    )
    return Lease(int(row["granted"]), float(row["wait"]))


async def block(conn: asyncpg.Connection, team: str, scope: str, seconds: float) -> None:
    """Slack answered 429: no replica calls (team, scope) for `seconds`."""
    await conn.execute("SELECT taskjuice_slack_block($1, $2, $3)", team, scope, seconds)
