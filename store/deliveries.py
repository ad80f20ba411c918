"""Deliveries: every Slack message and email that shows (or will show) a task.

A delivery is planned before it is sent (status `queued`), so a change that arrives first still
finds it; planning the same one twice adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from bot.domain import DeliveryStatus

__all__ = [
    "Delivery",
    "Planned",
    "Watched",
    "bounce_token_for",
    "bounced",
    "deliveries_of",
    "delivery",
    "due_watches",
    "emails_from_slack_cache",
    "mark_failed",
    "mark_mailed",
    "mark_posted",
    "note_error",
    "plan",
    "plan_for",
    "settle_watches",
    "watch",
    "watch_facts",
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
    slack_shown: str | None = None  # digest of what the Slack message shows (migration 0019)
    workspace: str = ""  # the task's TaskJuice workspace


_SELECT = """
SELECT d.id, d.task_id, d.tier, d.channel, d.purpose, d.approver_id, a.email AS approver_email,
       a.slack_user_id AS approver_slack_user_id, d.status, d.slack_team_id, d.slack_channel,
       d.slack_ts, d.mail_message_id, d.slack_shown, t.workspace
FROM deliveries d JOIN tasks t ON t.id = d.task_id LEFT JOIN approvers a ON a.id = d.approver_id
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


# After a delivery changed (`changed`: its task and tier), the tier counts as reached from
# its first accepted message; after a failure the sweeper looks at the tier again now (the
# approver may move to another channel).
_MARK_POSTED = """
WITH changed AS (
    UPDATE deliveries SET status = 'sent', slack_team_id = $2, slack_channel = $3,
        slack_ts = $4, slack_shown = $5, last_error = NULL, error_at = NULL,
        sent_at = coalesce(sent_at, now()),
        updated_at = now()
    WHERE id = $1 RETURNING task_id, tier
)
UPDATE delivery_watch w SET reached_at = coalesce(w.reached_at, now())
FROM changed c WHERE w.task_id = c.task_id AND w.tier = c.tier
"""

_MARK_MAILED = """
WITH changed AS (
    UPDATE deliveries SET status = 'sent', mail_message_id = $2, last_error = NULL,
        error_at = NULL, sent_at = coalesce(sent_at, now()), updated_at = now()
    WHERE id = $1 RETURNING task_id, tier
)
UPDATE delivery_watch w SET reached_at = coalesce(w.reached_at, now())
FROM changed c WHERE w.task_id = c.task_id AND w.tier = c.tier
"""

_MARK_FAILED = """
WITH changed AS (
    UPDATE deliveries SET status = 'failed', last_error = $2, error_at = now(),
        updated_at = now()
    WHERE id = $1 AND status <> 'sent' RETURNING task_id, tier
)
UPDATE delivery_watch w SET check_at = now()
FROM changed c WHERE w.task_id = c.task_id AND w.tier = c.tier
"""

# A bounce fails a delivery SMTP had accepted: the tier's `reached_at` is worked out again
# (from the deliveries still standing), and the tier looked at now.
_BOUNCED = """
WITH changed AS (
    UPDATE deliveries SET status = 'failed', last_error = $2, error_at = now(),
        updated_at = now()
    WHERE bounce_token = $1 AND channel = 'email' RETURNING id, task_id, tier
), touched AS (
    UPDATE delivery_watch w SET check_at = now(),
        reached_at = (SELECT min(x.sent_at) FROM deliveries x
                      WHERE x.task_id = w.task_id AND x.tier = w.tier AND x.status = 'sent'
                        AND x.id NOT IN (SELECT id FROM changed))
    FROM changed c WHERE w.task_id = c.task_id AND w.tier = c.tier
)
SELECT id FROM changed
"""


async def mark_posted(
    conn: asyncpg.Connection,
    delivery_id: int,
    *,
    team_id: str,
    channel: str,
    ts: str,
    shown: str | None,
) -> None:
    """Slack has the post; `shown` digests what it shows (None: not known)."""
    await conn.execute(_MARK_POSTED, delivery_id, team_id, channel, ts, shown)


async def mark_mailed(conn: asyncpg.Connection, delivery_id: int, message_id: str) -> None:
    await conn.execute(_MARK_MAILED, delivery_id, message_id)


async def mark_failed(conn: asyncpg.Connection, delivery_id: int, error: str) -> None:
    """A delivery no retry will mend; the sweeper looks at its tier at once (failover)."""
    await conn.execute(_MARK_FAILED, delivery_id, error[:500])


async def note_error(conn: asyncpg.Connection, delivery_id: int, error: str) -> None:
    """A transient failure: the delivery stays queued (the outbox retries it), and shows why."""
    await conn.execute(
        "UPDATE deliveries SET last_error = $2, error_at = now(), updated_at = now()"
        " WHERE id = $1 AND status = 'queued'",
        delivery_id,
        error[:500],
    )


async def bounce_token_for(conn: asyncpg.Connection, delivery_id: int, fresh: str) -> str:
    """The envelope-sender token of a request mail: `fresh` unless it has one already."""
    token: str = await conn.fetchval(
        "UPDATE deliveries SET bounce_token = coalesce(bounce_token, $2) WHERE id = $1"
        " RETURNING bounce_token",
        delivery_id,
        fresh,
    )
    return token


async def bounced(conn: asyncpg.Connection, token: str, error: str) -> Delivery | None:
    """A delivery status notification said the mail with this envelope token failed: the
    delivery is failed even though SMTP accepted it, and its tier looked at again now."""
    row = await conn.fetchrow(_BOUNCED, token, error[:500])
    return await delivery(conn, row["id"]) if row else None


# --- watching whether a tier's approvers were reached (docs/contract.md §8) ----------------


async def watch(conn: asyncpg.Connection, tiers: Sequence[tuple[UUID, int]], grace: float) -> None:
    """Start watching the delivery of these (task, tier)s, from now: the grace is capped at a
    quarter of what is left of the tier's window; half of it is the transient failover time.
    Watching one twice changes nothing."""
    if not tiers:
        return
    await conn.execute(
        """
        WITH wanted AS (
            SELECT w.task_id, w.tier,
                   least(make_interval(secs => $3), (t.expires_at - now()) / 4) AS grace
            FROM unnest($1::uuid[], $2::int[]) AS w(task_id, tier)
            JOIN tasks t ON t.id = w.task_id AND t.tier = w.tier AND t.status = 'pending'
        )
        INSERT INTO delivery_watch (task_id, tier, failover_at, grace_at, check_at)
        SELECT task_id, tier, now() + grace / 2, now() + grace, now() + grace / 2 FROM wanted
        ON CONFLICT DO NOTHING
        """,
        [t for t, _ in tiers],
        [n for _, n in tiers],
        float(grace),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Watched:
    """One watched tier as the sweeper reads it, with the task and the tier's approvers."""

    task_id: UUID
    tier: int
    workspace: str
    run_id: str
    status: str
    task_tier: int
    expires_at: Any
    deliver: dict[str, Any]
    failover_at: Any
    grace_at: Any
    started_at: Any
    undeliverable_at: Any
    now: Any
    # approver id -> (email, slack_user_id, email known from the Slack user cache)
    approvers: dict[int, tuple[str | None, str | None, str | None]]
    deliveries: list[asyncpg.Record]


async def due_watches(conn: asyncpg.Connection, limit: int) -> list[tuple[UUID, int]]:
    """Lock up to `limit` watched tiers whose time to look has come (SKIP LOCKED, so replicas
    share them), oldest first; nothing is read when nothing is due."""
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT FROM delivery_watch WHERE check_at <= now())"
    ):
        return []
    rows = await conn.fetch(
        "SELECT task_id, tier FROM delivery_watch WHERE check_at <= now()"
        " ORDER BY check_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [(r["task_id"], r["tier"]) for r in rows]


async def watch_facts(conn: asyncpg.Connection, keys: Sequence[tuple[UUID, int]]) -> list[Watched]:
    """Everything the sweeper decides on for these watched tiers, in three statements."""
    ids = [t for t, _ in keys]
    tiers = [n for _, n in keys]
    watched = await conn.fetch(
        """
        SELECT w.task_id, w.tier, w.failover_at, w.grace_at, w.started_at, w.undeliverable_at,
               t.workspace, t.run_id, t.status, t.tier AS task_tier, t.expires_at, t.deliver,
               now() AS now
        FROM unnest($1::uuid[], $2::int[]) AS k(task_id, tier)
        JOIN delivery_watch w ON w.task_id = k.task_id AND w.tier = k.tier
        JOIN tasks t ON t.id = w.task_id
        """,
        ids,
        tiers,
    )
    people = await conn.fetch(
        """
        SELECT a.id, a.task_id, a.tier, a.email, a.slack_user_id,
               (SELECT u.email FROM slack_users u
                WHERE u.user_id = a.slack_user_id AND u.email IS NOT NULL
                  AND (a.slack_team_id IS NULL OR u.team_id = a.slack_team_id)
                ORDER BY u.updated_at DESC LIMIT 1) AS cached_email
        FROM unnest($1::uuid[], $2::int[]) AS k(task_id, tier)
        JOIN approvers a ON a.task_id = k.task_id AND a.tier = k.tier
        ORDER BY a.id
        """,
        ids,
        tiers,
    )
    sent = await conn.fetch(
        """
        SELECT d.id, d.task_id, d.tier, d.approver_id, d.channel, d.status, d.last_error,
               d.error_at, d.sent_at, d.created_at
        FROM unnest($1::uuid[], $2::int[]) AS k(task_id, tier)
        JOIN deliveries d ON d.task_id = k.task_id AND d.tier = k.tier
        ORDER BY d.id
        """,
        ids,
        tiers,
    )
    found = []
    for w in watched:
        key = (w["task_id"], w["tier"])
        found.append(
            Watched(
                task_id=w["task_id"],
                tier=w["tier"],
                workspace=w["workspace"],
                run_id=w["run_id"],
                status=w["status"],
                task_tier=w["task_tier"],
                expires_at=w["expires_at"],
                deliver=dict(w["deliver"]),
                failover_at=w["failover_at"],
                grace_at=w["grace_at"],
                started_at=w["started_at"],
                undeliverable_at=w["undeliverable_at"],
                now=w["now"],
                approvers={
                    p["id"]: (p["email"], p["slack_user_id"], p["cached_email"])
                    for p in people
                    if (p["task_id"], p["tier"]) == key
                },
                deliveries=[d for d in sent if (d["task_id"], d["tier"]) == key],
            )
        )
    return found


async def settle_watches(
    conn: asyncpg.Connection, settled: Sequence[tuple[UUID, int, Any, bool]]
) -> None:
    """Write the next look (or NULL: none) for each (task, tier, check_at, announced now)."""
    if not settled:
        return
    await conn.execute(
        """
        UPDATE delivery_watch w SET check_at = s.check_at,
            undeliverable_at = CASE WHEN s.announced THEN coalesce(w.undeliverable_at, now())
                                    ELSE w.undeliverable_at END
        FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::bool[])
             AS s(task_id, tier, check_at, announced)
        WHERE w.task_id = s.task_id AND w.tier = s.tier
        """,
        [s[0] for s in settled],
        [s[1] for s in settled],
        [s[2] for s in settled],
        [s[3] for s in settled],
    )


async def emails_from_slack_cache(conn: asyncpg.Connection, approver_ids: list[int]) -> None:
    """Give each of these approvers known only by Slack id the email the bot's Slack user
    cache holds for them (so a request can be mailed to them)."""
    await conn.execute(
        """
        UPDATE approvers a SET email = u.email
        FROM slack_users u
        WHERE a.id = ANY($1::bigint[]) AND a.email IS NULL AND u.user_id = a.slack_user_id
          AND u.email IS NOT NULL AND (a.slack_team_id IS NULL OR u.team_id = a.slack_team_id)
        """,
        approver_ids,
    )


async def plan_for(
    conn: asyncpg.Connection, approvers: Sequence[tuple[UUID, int, int]], *, channel: str
) -> list[tuple[int, UUID]]:
    """Plan the request to single approvers (task, tier, approver id) on `channel`; one
    already planned on that channel (whatever became of it) is skipped, so no approver gets a
    second copy on a channel."""
    if not approvers:
        return []
    rows = await conn.fetch(
        """
        INSERT INTO deliveries (task_id, tier, approver_id, channel, purpose, status,
                                recipient, mail_to)
        SELECT a.task_id, a.tier, a.id, $4, 'request', 'queued', a.id::text,
               CASE WHEN $4 = 'email' THEN a.email END
        FROM unnest($1::uuid[], $2::int[], $3::bigint[]) AS w(task_id, tier, approver_id)
        JOIN approvers a ON a.id = w.approver_id AND a.task_id = w.task_id AND a.tier = w.tier
        WHERE ($4 <> 'email' OR a.email IS NOT NULL)
        ON CONFLICT DO NOTHING RETURNING id, task_id
        """,
        [a[0] for a in approvers],
        [a[1] for a in approvers],
        [a[2] for a in approvers],
        channel,
    )
    return sorted((r["id"], r["task_id"]) for r in rows)
