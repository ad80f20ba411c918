"""Deliveries: every Slack message and email that shows (or will show) a task.

A delivery is planned before it is sent (status `queued`), so a change that arrives first still
finds it; planning the same one twice adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from bot.domain import DeliveryStatus

__all__ = [
    "Delivery",
    "Planned",
    "deliveries_of",
    "delivery",
    "mark_failed",
    "mark_mailed",
    "mark_posted",
    "plan",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One message that shows a task to an approver or a channel."""

    id: int
    task_id: UUID
    tier: int
    channel: str
    purpose: str
    approver_id: int | None
    approver_email: str | None
    approver_slack_user_id: str | None
    status: DeliveryStatus
    slack_team_id: str | None
    slack_channel: str | None
    slack_ts: str | None
    mail_message_id: str | None


_SELECT = """
SELECT d.id, d.task_id, d.tier, d.channel, d.purpose, d.approver_id, a.email AS approver_email,
       a.slack_user_id AS approver_slack_user_id, d.status, d.slack_team_id, d.slack_channel,
       d.slack_ts, d.mail_message_id
FROM deliveries d LEFT JOIN approvers a ON a.id = d.approver_id
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned:
    """One tier's messages to plan for a task: to its approvers, or one post in a channel."""

    task_id: UUID
    tier: int
    purpose: str
    slack_channel: str | None = None


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(**(dict(row) | {"status": DeliveryStatus(row["status"])}))


async def plan(
    conn: asyncpg.Connection, wanted: Sequence[Planned], *, channel: str
) -> list[tuple[int, UUID]]:
    """Plan messages on `channel` ('slack' or 'email') for many tasks in one statement: one per
    approver of the tier (with an email address, for mail), or one post in `slack_channel`.
    Returns (delivery id, task id) of those planned now, in order; planned ones are skipped."""
    if not wanted:
        return []
    rows = await conn.fetch(
        """
        WITH wanted AS (
            SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[])
                WITH ORDINALITY AS w(task_id, tier, purpose, slack_channel, n)
        ), messages AS (
            SELECT w.n, 0::bigint AS approver, w.task_id, w.tier, NULL::bigint AS approver_id,
                   w.purpose, w.slack_channel, w.slack_channel AS recipient,
                   NULL::text AS mail_to
            FROM wanted w WHERE w.slack_channel IS NOT NULL
            UNION ALL
            SELECT w.n, a.id, w.task_id, w.tier, a.id, w.purpose, NULL, a.id::text,
                   CASE WHEN $5 = 'email' THEN a.email END
            FROM wanted w JOIN approvers a ON a.task_id = w.task_id AND a.tier = w.tier
            WHERE w.slack_channel IS NULL AND ($5 <> 'email' OR a.email IS NOT NULL)
        )
        INSERT INTO deliveries (task_id, tier, approver_id, channel, purpose, status,
                                slack_channel, recipient, mail_to)
        SELECT task_id, tier, approver_id, $5, purpose, 'queued', slack_channel, recipient,
               mail_to
        FROM messages ORDER BY n, approver
        ON CONFLICT DO NOTHING RETURNING id, task_id
        """,
        [w.task_id for w in wanted],
        [w.tier for w in wanted],
        [w.purpose for w in wanted],
        [w.slack_channel for w in wanted],
        channel,
    )
    return sorted((r["id"], r["task_id"]) for r in rows)


async def deliveries_of(
    conn: asyncpg.Connection, task_ids: list[UUID], channel: str
) -> list[Delivery]:
    """The tasks' deliveries on one channel that were not given up on, in the order made."""
    rows = await conn.fetch(
        _SELECT + " WHERE d.task_id = ANY($1::uuid[]) AND d.channel = $2 AND d.status <> 'failed'"
        " ORDER BY d.id",
        task_ids,
        channel,
    )
    return [_delivery(r) for r in rows]


async def delivery(conn: asyncpg.Connection, delivery_id: int) -> Delivery | None:
    row = await conn.fetchrow(_SELECT + " WHERE d.id = $1", delivery_id)
    return _delivery(row) if row else None


async def mark_posted(
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


async def mark_mailed(conn: asyncpg.Connection, delivery_id: int, message_id: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'sent', mail_message_id = $2, last_error = NULL,"
        " updated_at = now() WHERE id = $1",
        delivery_id,
        message_id,
    )


async def mark_failed(conn: asyncpg.Connection, delivery_id: int, error: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'failed', last_error = $2, updated_at = now()"
        " WHERE id = $1 AND status <> 'sent'",
        delivery_id,
        error[:500],
    )
