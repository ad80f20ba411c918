"""Set-based timeout sweeps: expiry, escalation and reminders, one statement per batch.

Each batch locks at most `limit` due tasks with SKIP LOCKED (so replicas and deciders never
wait on each other), and in the same statement writes the audit rows, the new task state, the
callbacks and one refresh item for the channels.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

__all__ = ["SweepCounts", "expire_due", "remind_due"]

SweepCounts = dict[str, int]

_EXPIRE = """
WITH due AS (
    SELECT id, tier, tier_count, timeout_policy, remind_before, remind_default
    FROM tasks
    WHERE status = 'pending' AND expires_at <= now() AND ($2::uuid IS NULL OR id = $2)
    ORDER BY expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), plan AS (
    SELECT d.id, d.tier, d.remind_before, d.remind_default,
           CASE WHEN d.timeout_policy = 'escalate' AND d.tier + 1 < d.tier_count THEN 'escalate'
                WHEN d.timeout_policy = 'proceed' THEN 'proceed'
                ELSE 'expire' END AS action,
           now() + make_interval(secs => next.expires_in) AS next_expires_at
    FROM due d
    LEFT JOIN approver_tiers next ON next.task_id = d.id AND next.tier = d.tier + 1
), audit AS (
    INSERT INTO decisions (task_id, tier, action, via)
    SELECT id, tier, action, 'timeout' FROM plan
    RETURNING id, task_id, decided_at
), moved AS (
    UPDATE tasks t SET
        status = CASE WHEN p.action = 'escalate' THEN 'pending' ELSE 'expired' END,
        resolution = CASE p.action WHEN 'escalate' THEN NULL WHEN 'proceed' THEN 'proceed'
                                   ELSE 'deny' END,
        tier = CASE WHEN p.action = 'escalate' THEN t.tier + 1 ELSE t.tier END,
        expires_at = CASE WHEN p.action = 'escalate' THEN p.next_expires_at ELSE t.expires_at END,
        remind_at = CASE WHEN p.action = 'escalate'
                         THEN taskjuice_remind_at(now(), p.next_expires_at, p.remind_before,
                                                  p.remind_default) END,
        final_decision_id = CASE WHEN p.action = 'escalate' THEN NULL ELSE a.id END,
        finished_at = CASE WHEN p.action = 'escalate' THEN NULL ELSE now() END,
        updated_at = now()
    FROM plan p JOIN audit a ON a.task_id = p.id
    WHERE t.id = p.id
    RETURNING t.id, a.id AS decision_id, p.action
), callbacks AS (
    -- The body is built from the audit row when it is sent (bot.callbacks.approval_event).
    INSERT INTO outbox (kind, payload, task_id, ordering_key, message_id)
    SELECT 'callback', jsonb_build_object('decision_id', m.decision_id), m.id,
           'callback:' || m.id, 'msg_' || replace(gen_random_uuid()::text, '-', '')
    FROM moved m
), refresh AS (
    -- One item for the whole batch: the channels refresh every task in it.
    INSERT INTO outbox (kind, payload, message_id)
    SELECT 'task.changed',
           jsonb_build_object('changes', jsonb_agg(jsonb_build_object(
               'task_id', m.id::text,
               'event', CASE WHEN m.action = 'escalate' THEN 'escalated' ELSE 'expired' END))),
           'msg_' || replace(gen_random_uuid()::text, '-', '')
    FROM moved m
    HAVING count(*) > 0
)
SELECT action, count(*)::int AS n FROM moved GROUP BY action
"""

_REMIND = """
WITH due AS (
    SELECT id FROM tasks
    WHERE status = 'pending' AND remind_at <= now()
    ORDER BY remind_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), reminded AS (
    UPDATE tasks t SET remind_at = NULL, updated_at = now()
    FROM due WHERE t.id = due.id
    RETURNING t.id, t.tier
), queued AS (
    INSERT INTO outbox (kind, payload, message_id)
    SELECT 'task.changed',
           jsonb_build_object('changes', jsonb_agg(jsonb_build_object(
               'task_id', r.id::text, 'event', 'reminder', 'tier', r.tier))),
           'msg_' || replace(gen_random_uuid()::text, '-', '')
    FROM reminded r
    HAVING count(*) > 0
)
SELECT count(*)::int FROM reminded
"""


async def expire_due(
    conn: asyncpg.Connection, *, limit: int, task_id: UUID | None = None
) -> SweepCounts:
    """Apply the timeout policy to up to `limit` overdue tasks (or just `task_id`).

    Runs in the caller's transaction when there is one. Returns counts by action
    (`expire`, `proceed`, `escalate`).
    """
    await conn.execute("SET LOCAL enable_seqscan = off")
    rows = await conn.fetch(_EXPIRE, limit, task_id)
    return {r["action"]: r["n"] for r in rows}


async def remind_due(conn: asyncpg.Connection, *, limit: int) -> int:
    """Queue one reminder for up to `limit` tasks whose reminder time has come."""
    count: int = await conn.fetchval(_REMIND, limit)
    return count
