"""Slack queries: the user cache, planned and sent deliveries, alert messages, home lists."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

__all__ = [
    "alert_posted",
    "cache_user",
    "claim_lookup",
    "email_of",
    "enterprise_of_team",
    "extend_lookup",
    "give_up_team_work",
    "home_seen",
    "home_viewers",
    "links_among",
    "lost_post",
    "lost_post_settled",
    "message_updated",
    "pending_for",
    "pending_tiers",
    "post_lost",
    "queue_updates",
    "release_lookup",
    "team_of_user",
    "unserved_tasks",
    "user_of_email",
    "workspace_served",
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


async def dm_channel_of(conn: asyncpg.Connection, team_id: str, user_id: str) -> str | None:
    """The DM channel the bot opened with this user before, if any."""
    channel: str | None = await conn.fetchval(
        "SELECT channel_id FROM slack_dm_channels WHERE team_id = $1 AND user_id = $2",
        team_id,
        user_id,
    )
    return channel


async def remember_dm_channel(
    conn: asyncpg.Connection, team_id: str, user_id: str, channel_id: str
) -> None:
    await conn.execute(
        "INSERT INTO slack_dm_channels (team_id, user_id, channel_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (team_id, user_id) DO UPDATE SET channel_id = EXCLUDED.channel_id",
        team_id,
        user_id,
        channel_id,
    )


_JUST_CLAIMED = 0.1


async def claim_lookup(
    conn: asyncpg.Connection, team_id: str, key: str, token: str, seconds: float
) -> float:
    """Claim the lookup of `key` in `team_id` for `seconds` under `token`: 0 when the caller
    now holds it (a claim of its own token is its own again), otherwise the seconds left on
    another caller's claim."""
    left: float = await conn.fetchval(
        """
        WITH mine AS (
            INSERT INTO slack_lookups (team_id, key, token, until)
            VALUES ($1, $2, $3, now() + make_interval(secs => $4))
            ON CONFLICT (team_id, key) DO UPDATE
                SET token = EXCLUDED.token, until = EXCLUDED.until
                WHERE slack_lookups.until <= now() OR slack_lookups.token = EXCLUDED.token
            RETURNING 0::float8 AS seconds_left
        )
        SELECT seconds_left FROM mine
        UNION ALL
        SELECT greatest(0.05, extract(epoch FROM until - now()))::float8
        FROM slack_lookups WHERE team_id = $1 AND key = $2 AND NOT EXISTS (SELECT FROM mine)
        LIMIT 1
        """,
        team_id,
        key,
        token,
        float(seconds),
    )
    # No row of ours and none visible: another caller's claim committed after this
    # statement's snapshot (its insert made ours conflict). It holds the lookup.
    return left if left is not None else _JUST_CLAIMED


async def extend_lookup(
    conn: asyncpg.Connection, team_id: str, key: str, token: str, seconds: float
) -> None:
    """Keep a claim `seconds` from now (its holder waits for the budget that long)."""
    await conn.execute(
        "UPDATE slack_lookups SET until = now() + make_interval(secs => $4)"
        " WHERE team_id = $1 AND key = $2 AND token = $3",
        team_id,
        key,
        token,
        float(seconds),
    )


async def release_lookup(conn: asyncpg.Connection, team_id: str, key: str, token: str) -> None:
    await conn.execute(
        "DELETE FROM slack_lookups WHERE team_id = $1 AND key = $2 AND token = $3",
        team_id,
        key,
        token,
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


async def home_viewers(conn: asyncpg.Connection, task_ids: list[UUID]) -> list[tuple[str, str]]:
    """(team, Slack user) of those who have opened the App Home and are approvers (any tier)
    of any of the tasks, by Slack id or by the email the bot knows for them; each once."""
    rows = await conn.fetch(
        """
        SELECT u.user_id, u.team_id FROM approvers a
        JOIN slack_users u ON u.user_id = a.slack_user_id AND u.home_seen_at IS NOT NULL
        WHERE a.task_id = ANY($1::uuid[])
        UNION
        SELECT u.user_id, u.team_id FROM approvers a
        JOIN slack_users u ON lower(u.email) = lower(a.email) AND u.home_seen_at IS NOT NULL
        WHERE a.task_id = ANY($1::uuid[])
        ORDER BY 1, 2
        """,
        task_ids,
    )
    return [(str(r["team_id"]), str(r["user_id"])) for r in rows]


# --- which team a piece of Slack work is for (distributed mode) ------------------------------


async def unserved_tasks(conn: asyncpg.Connection, task_ids: list[UUID]) -> set[UUID]:
    """The tasks whose workspace has no active Slack installation bound to it."""
    rows = await conn.fetch(
        "SELECT t.id FROM tasks t WHERE t.id = ANY($1::uuid[]) AND NOT EXISTS ("
        " SELECT 1 FROM slack_installations i"
        " WHERE i.workspace = t.workspace AND i.status = 'active')",
        task_ids,
    )
    return {r["id"] for r in rows}


async def workspace_served(conn: asyncpg.Connection, workspace: str) -> bool:
    """Whether an active Slack installation is bound to `workspace`."""
    served: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM slack_installations"
        " WHERE workspace = $1 AND status = 'active')",
        workspace,
    )
    return served


async def team_of_user(conn: asyncpg.Connection, user_id: str) -> tuple[str, str | None] | None:
    """(team, enterprise) of a Slack user the bot has met (latest first), for work queued
    without its team."""
    row = await conn.fetchrow(
        "SELECT u.team_id, i.enterprise_id FROM slack_users u"
        " LEFT JOIN slack_installations i ON coalesce(i.bound_team_id, i.team_id) = u.team_id"
        " WHERE u.user_id = $1 ORDER BY u.home_seen_at DESC NULLS LAST, u.updated_at DESC"
        " LIMIT 1",
        user_id,
    )
    return None if row is None else (str(row["team_id"]), row["enterprise_id"])


async def enterprise_of_team(conn: asyncpg.Connection, team_id: str) -> str | None:
    """The Enterprise Grid organisation of an installed team, if any."""
    enterprise: str | None = await conn.fetchval(
        "SELECT enterprise_id FROM slack_installations"
        " WHERE coalesce(bound_team_id, team_id) = $1 ORDER BY status LIMIT 1",
        team_id,
    )
    return enterprise


# --- a revoked team: its Slack work given up, its pending approvals mailed -------------------


async def give_up_team_work(
    conn: asyncpg.Connection, kinds: list[str], workspace: str, team_id: str, error: str
) -> int:
    """Dead-letter the pending Slack outbox items of `workspace`'s tasks and alerts, and those
    addressed to `team_id`, and mark its queued Slack deliveries failed; returns the items."""
    given_up = await conn.fetch(
        """
        UPDATE outbox o SET status = 'dead', last_error = $4, finished_at = now()
        WHERE o.status = 'pending' AND o.kind = ANY($1::text[]) AND (
            o.task_id IN (SELECT id FROM tasks WHERE workspace = $2)
            OR o.payload->>'alert_id' IN (SELECT id::text FROM alert_state WHERE workspace = $2)
            OR o.payload->>'team_id' = $3)
        RETURNING o.id
        """,
        kinds,
        workspace,
        team_id,
        error[:500],
    )
    await conn.execute(
        "UPDATE deliveries SET status = 'failed', last_error = $2, updated_at = now()"
        " WHERE channel = 'slack' AND status = 'queued'"
        " AND task_id IN (SELECT id FROM tasks WHERE workspace = $1)",
        workspace,
        error[:500],
    )
    return len(given_up)


async def pending_tiers(
    conn: asyncpg.Connection, workspace: str, team_id: str
) -> list[tuple[UUID, int]]:
    """The workspace's pending tasks and their current tiers, after giving each approver of
    that tier known only by Slack id the email the team's user cache has for them."""
    await conn.execute(
        """
        UPDATE approvers a SET email = u.email
        FROM tasks t, slack_users u
        WHERE t.workspace = $1 AND t.status = 'pending' AND a.task_id = t.id
          AND a.tier = t.tier AND a.email IS NULL AND u.team_id = $2
          AND u.user_id = a.slack_user_id AND u.email IS NOT NULL
        """,
        workspace,
        team_id,
    )
    rows = await conn.fetch(
        "SELECT id, tier FROM tasks WHERE workspace = $1 AND status = 'pending' ORDER BY id",
        workspace,
    )
    return [(r["id"], r["tier"]) for r in rows]


# --- coalesced message updates (contract §7) ----------------------------------------------

_LOCK_UPDATES = (
    "SELECT count(pg_advisory_xact_lock(hashtextextended('slack-update/' || s.key, 0)))"
    " FROM (SELECT DISTINCT key FROM unnest($1::text[]) AS key ORDER BY 1) AS s"
)

_QUEUE_UPDATES = """
INSERT INTO outbox (kind, payload, task_id, ordering_key, message_id, next_attempt_at)
SELECT $1, jsonb_build_object('delivery_id', u.delivery_id), u.task_id, u.key, u.message_id,
       CASE
           -- one of this message's updates is in flight: the next carries what follows it
           WHEN EXISTS (SELECT FROM outbox o WHERE o.ordering_key = u.key AND o.kind = $1
                        AND o.status = 'pending' AND o.claimed_by IS NOT NULL)
           THEN now() + make_interval(secs => $6)
           ELSE greatest(now(), d.slack_updated_at + make_interval(secs => $6))
       END
FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::text[]) WITH ORDINALITY
    AS u(delivery_id, task_id, key, message_id, n)
JOIN deliveries d ON d.id = u.delivery_id
WHERE NOT EXISTS (SELECT FROM outbox o WHERE o.ordering_key = u.key AND o.kind = $1
                  AND o.status = 'pending' AND o.claimed_by IS NULL)
ORDER BY u.n
ON CONFLICT (message_id) DO NOTHING
"""


async def queue_updates(
    conn: asyncpg.Connection,
    kind: str,
    shown: Sequence[tuple[int, UUID]],
    *,
    change_id: str,
    settle: float,
) -> None:
    """Queue an update of each message in `shown` (delivery id, task id) unless one is already
    waiting, unclaimed: that one renders the task when it is sent, after this transaction
    commits, so it carries this change too. An update queued while another of the same message
    is in flight, or within `settle` seconds of the last one sent, waits until `settle` seconds
    have passed, gathering the rest of a burst. Items share the message's ordering key with its
    post (`slack:<delivery id>`), so they leave after it and one at a time.

    Transactions queueing updates of the same messages take turns (an advisory lock per
    message, in key order), so two changes committed together still leave one waiting."""
    if not shown:
        return
    keys = [f"slack:{delivery_id}" for delivery_id, _ in shown]
    await conn.execute(_LOCK_UPDATES, keys)
    await conn.execute(
        _QUEUE_UPDATES,
        kind,
        [delivery_id for delivery_id, _ in shown],
        [task_id for _, task_id in shown],
        keys,
        [f"{change_id}:{kind}:{delivery_id}" for delivery_id, _ in shown],
        settle,
    )


async def message_updated(
    conn: asyncpg.Connection, delivery_id: int, shown: str | None = None
) -> None:
    """Record that the message's chat.update just left (see `queue_updates`), showing what
    `shown` digests."""
    await conn.execute(
        "UPDATE deliveries SET slack_updated_at = now(), slack_shown = coalesce($2, slack_shown)"
        " WHERE id = $1",
        delivery_id,
        shown,
    )


# --- posts whose answer was lost ------------------------------------------------------------


async def post_lost(
    conn: asyncpg.Connection, delivery_id: int, started: datetime, ended: datetime
) -> None:
    """A post of this delivery ran from `started` to `ended` and its answer was lost: Slack may
    have it. Spans of several such attempts are joined."""
    await conn.execute(
        "UPDATE deliveries SET slack_lost_from = least(slack_lost_from, $2),"
        " slack_lost_to = greatest(slack_lost_to, $3) WHERE id = $1",
        delivery_id,
        started,
        ended,
    )


async def lost_post_settled(conn: asyncpg.Connection, delivery_id: int) -> None:
    """The lost posts were looked for and are not in Slack: a later retry reads nothing."""
    await conn.execute(
        "UPDATE deliveries SET slack_lost_from = NULL, slack_lost_to = NULL WHERE id = $1",
        delivery_id,
    )


async def lost_post(
    conn: asyncpg.Connection, delivery_id: int
) -> tuple[datetime, datetime, float] | None:
    """When this delivery's lost posts ran (from, to), and seconds since the last ended;
    None when no post of it was lost."""
    row = await conn.fetchrow(
        "SELECT slack_lost_from, slack_lost_to,"
        " extract(epoch FROM now() - slack_lost_to)::float8 AS age"
        " FROM deliveries WHERE id = $1 AND slack_lost_from IS NOT NULL",
        delivery_id,
    )
    if row is None:
        return None
    return row["slack_lost_from"], row["slack_lost_to"], float(row["age"])
