"""Slack queries: the user cache, planned and sent deliveries, alert messages, home lists."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

__all__ = [
    "alert_posted",
    "cache_user",
    "email_of",
    "home_seen",
    "home_viewers",
    "links_among",
    "pending_for",
    "user_of_email",
]


async def cache_user(
    conn: asyncpg.Connection, team_id: str, user_id: str, email: str | None, tz: str | None
) -> None:
    await conn.execute(
        "INSERT INTO slack_users (team_id, user_id, email, tz) VALUES ($1, $2, lower($3), $4)"
        " ON CONFLICT (team_id, user_id) DO UPDATE SET email = EXCLUDED.email,"
        " tz = EXCLUDED.tz, updated_at = now()",
        team_id,
        user_id,
        email,
        tz,
    )


async def email_of(conn: asyncpg.Connection, team_id: str, user_id: str) -> str | None:
    email: str | None = await conn.fetchval(
        "SELECT email FROM slack_users WHERE team_id = $1 AND user_id = $2", team_id, user_id
    )
    return email


async def user_of_email(conn: asyncpg.Connection, team_id: str, email: str) -> str | None:
    user: str | None = await conn.fetchval(
        "SELECT user_id FROM slack_users WHERE team_id = $1 AND lower(email) = lower($2)"
        " ORDER BY updated_at DESC LIMIT 1",
        team_id,
        email,
    )
    return user


async def links_among(
    conn: asyncpg.Connection, user_ids: list[str], emails: list[str]
) -> list[tuple[str, str]]:
    """(email, Slack user) pairs the cache holds for any of these users or emails, any team."""
    rows = await conn.fetch(
        "SELECT email, user_id FROM slack_users WHERE email IS NOT NULL"
        " AND (user_id = ANY($1::text[]) OR lower(email) = ANY($2::text[]))",
        user_ids,
        [e.lower() for e in emails],
    )
    return [(str(r["email"]), str(r["user_id"])) for r in rows]


async def pending_for(
    conn: asyncpg.Connection,
    user_id: str,
    email: str | None,
    limit: int = 20,
    workspaces: Sequence[str] | None = None,
) -> list[UUID]:
    """Pending tasks whose current tier includes this person, soonest expiry first (only
    tasks of `workspaces`, when given)."""
    rows = await conn.fetch(
        """
        SELECT t.id FROM tasks t
        WHERE t.status = 'pending' AND EXISTS (
            SELECT 1 FROM approvers a
            WHERE a.task_id = t.id AND a.tier = t.tier
              AND (a.slack_user_id = $1 OR ($2::text IS NOT NULL AND lower(a.email) = lower($2))))
          AND ($4::text[] IS NULL OR t.workspace = ANY($4::text[]))
        ORDER BY t.expires_at LIMIT $3
        """,
        user_id,
        email,
        limit,
        None if workspaces is None else list(workspaces),
    )
    return [r["id"] for r in rows]


async def alert_posted(
    conn: asyncpg.Connection, alert_id: int, *, team_id: str, channel: str, ts: str
) -> None:
    await conn.execute(
        "UPDATE alert_state SET slack_team_id = $2, slack_channel = $3, slack_ts = $4"
        " WHERE id = $1",
        alert_id,
        team_id,
        channel,
        ts,
    )


async def home_seen(conn: asyncpg.Connection, team_id: str, user_id: str) -> None:
    """Remember that this user has opened the App Home."""
    await conn.execute(
        "INSERT INTO slack_users (team_id, user_id, home_seen_at) VALUES ($1, $2, now())"
        " ON CONFLICT (team_id, user_id) DO UPDATE SET home_seen_at = now()",
        team_id,
        user_id,
    )


async def home_viewers(conn: asyncpg.Connection, task_ids: list[UUID]) -> list[str]:
    """Slack users who have opened the App Home and are approvers (any tier) of any of the
    tasks, by Slack id or by the email the bot knows for them; each once."""
    rows = await conn.fetch(
        """
        SELECT u.user_id FROM approvers a
        JOIN slack_users u ON u.user_id = a.slack_user_id AND u.home_seen_at IS NOT NULL
        WHERE a.task_id = ANY($1::uuid[])
        UNION
        SELECT u.user_id FROM approvers a
        JOIN slack_users u ON lower(u.email) = lower(a.email) AND u.home_seen_at IS NOT NULL
        WHERE a.task_id = ANY($1::uuid[])
        ORDER BY 1
        """,
        task_ids,
    )
    return [str(r["user_id"]) for r in rows]
