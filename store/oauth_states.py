"""OAuth `state` values: issued for an install link, used up once, valid 30 minutes by the
database clock."""

from __future__ import annotations

from datetime import datetime

import asyncpg

__all__ = ["consume_state", "issue_state", "live_state_workspace"]


async def live_state_workspace(conn: asyncpg.Connection, state: str) -> str | None:
    """The workspace of a live, unused install-link state (without using it up)."""
    workspace: str | None = await conn.fetchval(
        "SELECT workspace FROM slack_oauth_states WHERE state = $1 AND expires_at > now()",
        state,
    )
    return workspace


async def issue_state(conn: asyncpg.Connection, state: str, workspace: str | None) -> datetime:
    """Store a new OAuth state (and drop expired ones); return when it expires."""
    expires_at: datetime = await conn.fetchval(
        "WITH expired AS (DELETE FROM slack_oauth_states WHERE expires_at < now())"
        " INSERT INTO slack_oauth_states (state, workspace) VALUES ($1, $2)"
        " RETURNING expires_at",
        state,
        workspace,
    )
    return expires_at


async def consume_state(conn: asyncpg.Connection, state: str) -> asyncpg.Record | None:
    """Use up `state` (once, atomically): (workspace) if it was live, else None."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "DELETE FROM slack_oauth_states WHERE state = $1"
        " RETURNING workspace, expires_at > now() AS live",
        state,
    )
    if row is None or not row["live"]:
        return None
    return row
