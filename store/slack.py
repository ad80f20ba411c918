"""Slack queries: the user cache, planned and sent deliveries, alert messages, home lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

__all__ = [
    "Delivery",
    "alert",
    "alert_posted",
    "cache_user",
    "content_hash",
    "deliveries_of",
    "delivery",
    "email_of",
    "mark_failed",
    "mark_sent",
    "pending_for",
    "plan",
    "user_of_email",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One Slack message that shows (or will show) a task."""

    id: int
    task_id: UUID
    tier: int
    purpose: str
    approver_id: int | None
    approver_email: str | None
    approver_slack_user_id: str | None
    status: str
    slack_team_id: str | None
    slack_channel: str | None
    slack_ts: str | None


_DELIVERY = """
SELECT d.id, d.task_id, d.tier, d.purpose, d.approver_id, a.email AS approver_email,
       a.slack_user_id AS approver_slack_user_id, d.status, d.slack_team_id, d.slack_channel,
       d.slack_ts
FROM deliveries d LEFT JOIN approvers a ON a.id = d.approver_id
"""


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


async def plan(
    conn: asyncpg.Connection, task_id: UUID, tier: int, purpose: str, *, channel: str | None
) -> list[int]:
    """Plan the messages of one tier (a DM per approver, or one channel post); returns the
    ids of the deliveries planned now (none if they were planned before)."""
    if channel is not None:
        rows = await conn.fetch(
            "INSERT INTO deliveries (task_id, tier, channel, purpose, status, slack_channel,"
            " recipient) VALUES ($1, $2, 'slack', $3, 'queued', $4, $4)"
            " ON CONFLICT DO NOTHING RETURNING id",
            task_id,
            tier,
            purpose,
            channel,
        )
    else:
        rows = await conn.fetch(
            "INSERT INTO deliveries (task_id, tier, approver_id, channel, purpose, status,"
            " recipient) SELECT task_id, tier, id, 'slack', $3, 'queued', id::text FROM approvers"
            " WHERE task_id = $1 AND tier = $2 ORDER BY approvers.id"
            " ON CONFLICT DO NOTHING RETURNING id",
            task_id,
            tier,
            purpose,
        )
    return [r["id"] for r in rows]


async def deliveries_of(conn: asyncpg.Connection, task_id: UUID) -> list[Delivery]:
    rows = await conn.fetch(
        _DELIVERY + " WHERE d.task_id = $1 AND d.channel = 'slack' AND d.status <> 'failed'"
        " ORDER BY d.id",
        task_id,
    )
    return [Delivery(**dict(r)) for r in rows]


async def delivery(conn: asyncpg.Connection, delivery_id: int) -> Delivery | None:
    row = await conn.fetchrow(_DELIVERY + " WHERE d.id = $1", delivery_id)
    return Delivery(**dict(row)) if row else None


async def mark_sent(
    conn: asyncpg.Connection, delivery_id: int, *, team_id: str, channel: str, ts: str
) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'sent', slack_team_id = $2, slack_channel = $3,"
        " slack_ts = $4, last_error = NULL, updated_at = now() WHERE id = $1",
        delivery_id,
        team_id,
        channel,
        ts,
    )


async def mark_failed(conn: asyncpg.Connection, delivery_id: int, error: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'failed', last_error = $2, updated_at = now()"
        " WHERE id = $1 AND status <> 'sent'",
        delivery_id,
        error[:500],
    )


async def content_hash(conn: asyncpg.Connection, task_id: UUID) -> str | None:
    value: str | None = await conn.fetchval("SELECT content_hash FROM tasks WHERE id = $1", task_id)
    return value


async def pending_for(
    conn: asyncpg.Connection, user_id: str, email: str | None, limit: int = 20
) -> list[UUID]:
    """Pending tasks whose current tier includes this person, soonest expiry first."""
    rows = await conn.fetch(
        """
        SELECT t.id FROM tasks t
        WHERE t.status = 'pending' AND EXISTS (
            SELECT 1 FROM approvers a
            WHERE a.task_id = t.id AND a.tier = t.tier
              AND (a.slack_user_id = $1 OR ($2::text IS NOT NULL AND lower(a.email) = lower($2))))
        ORDER BY t.expires_at LIMIT $3
        """,
        user_id,
        email,
        limit,
    )
    return [r["id"] for r in rows]


async def alert(conn: asyncpg.Connection, alert_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM alert_state WHERE id = $1", alert_id)
    return dict(row) if row else None


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
