"""The Slack egress budget shared by every replica (migration 0014)."""

from __future__ import annotations

import asyncpg

__all__ = ["block", "take"]


async def take(
    conn: asyncpg.Connection, team: str, scope: str, *, count: int, window: float, want: int
) -> tuple[int, float]:
    """Up to `want` permits of (team, scope), keeping at most `count` granted in any window of
    `window` seconds: (how many were granted, seconds until one frees when none were)."""
    row = await conn.fetchrow(
        "SELECT granted, wait FROM taskjuice_slack_permits($1, $2, $3, $4, $5)",
        team,
        scope,
        count,
        window,
        want,
    )
    return int(row["granted"]), float(row["wait"])


async def block(conn: asyncpg.Connection, team: str, scope: str, seconds: float) -> None:
    """Slack answered 429: no replica calls (team, scope) for `seconds`."""
    await conn.execute("SELECT taskjuice_slack_block($1, $2, $3)", team, scope, seconds)
