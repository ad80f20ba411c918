"""Set-based timeout sweeps: expiry, escalation and reminders, one statement per batch.

The batch size is written into the statement rather than passed as a parameter: a statement
without parameters is planned once per connection and its plan reused, where a parameterised
one was planned again for every batch.

Each batch locks at most `limit` due tasks with SKIP LOCKED (so replicas and deciders never
wait on each other), and in the same statement writes the audit rows, the new task state, the
callbacks and one refresh item for the channels.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from bot.domain import OutboxKind

__all__ = ["SweepCounts", "expire_due", "remind_due", "timeout_changes"]

SweepCounts = dict[str, int]

# For the batch's transaction only: due timers are found by walking an index in time order up
# to the limit, and every other row by an index lookup, whatever the statistics say. Planned
# from tables analyzed while nearly empty, a batch read and sorted every overdue task (a
# quarter of a second per batch of 500 with 100,000 due); only the walk needs neither a sort
# nor a sequential scan. With no statistics at all (a new install) the pending tasks were
# estimated at a handful, set aside and scanned once per due timer; a lookup needs no such
# materialized copy.
_WALK_IN_ORDER = (
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off; SET LOCAL enable_material = off"
)

_EXPIRE = """
WITH due AS (
    -- The timer finds the task; the lock is the task's. A task decided or escalated since
    -- this statement's snapshot is re-read under the lock and left out (no longer pending,
    -- or no longer at the timer's tier).
    SELECT t.id, t.tier, t.tier_count, t.timeout_policy, t.remind_before, t.remind_default
    FROM task_timers c JOIN tasks t ON t.id = c.task_id AND t.tier = c.tier
    WHERE c.expires_at <= now() AND t.status = 'pending' {only_task}
    ORDER BY c.expires_at
    LIMIT {limit}
    FOR UPDATE OF t SKIP LOCKED
), plan AS MATERIALIZED (
    -- The audit row's id is drawn here, so `moved` finds it without joining `audit` (a join
    -- of two CTEs, planned blind to their sizes, was a nested loop: 500 x 500 per batch).
    SELECT nextval('decisions_id_seq') AS decision_id, d.id, d.tier, d.remind_before,
           d.remind_default,
           -- A tier announced undeliverable that still reached nobody never proceeds
           -- (docs/contract.md §8).
           CASE WHEN d.timeout_policy = 'escalate' AND d.tier + 1 < d.tier_count THEN 'escalate'
                WHEN d.timeout_policy = 'proceed' AND w.reached_at IS NULL
                     AND w.undeliverable_at IS NOT NULL THEN 'expire'
                WHEN d.timeout_policy = 'proceed' THEN 'proceed'
                ELSE 'expire' END AS action,
           CASE WHEN w.reached_at IS NULL AND w.undeliverable_at IS NOT NULL
                THEN 'undeliverable' END AS reason,
           now() + make_interval(secs => next.expires_in) AS next_expires_at
    FROM due d
    LEFT JOIN approver_tiers next ON next.task_id = d.id AND next.tier = d.tier + 1
    LEFT JOIN delivery_watch w ON w.task_id = d.id AND w.tier = d.tier
), audit AS (
    INSERT INTO decisions (id, task_id, tier, action, via, reason)
    SELECT decision_id, id, tier, action, 'timeout', reason FROM plan
), moved AS (
    UPDATE tasks t SET
        status = CASE WHEN p.action = 'escalate' THEN 'pending' ELSE 'expired' END,
        resolution = CASE p.action WHEN 'escalate' THEN NULL WHEN 'proceed' THEN 'proceed'
                                   ELSE 'deny' END,
        tier = CASE WHEN p.action = 'escalate' THEN t.tier + 1 ELSE t.tier END,
        expires_at = CASE WHEN p.action = 'escalate' THEN p.next_expires_at ELSE t.expires_at END,
        final_decision_id = CASE WHEN p.action = 'escalate' THEN NULL ELSE p.decision_id END,
        finished_at = CASE WHEN p.action = 'escalate' THEN NULL ELSE now() END,
        version = t.version + 1,
        updated_at = now()
    FROM plan p
    WHERE t.id = p.id
    RETURNING t.id, t.tier, t.expires_at, p.decision_id, p.action,
              p.remind_before, p.remind_default
), stopped AS (
    -- The batch's clocks are named as an array, which the planner can only look up in the
    -- index: joined to `moved` instead, a plan made from statistics taken while the table
    -- was nearly empty scanned the whole table once for every task of the batch.
    DELETE FROM task_timers c
    WHERE c.task_id = ANY (ARRAY(SELECT id FROM moved WHERE action <> 'escalate'))
), rescheduled AS (
    UPDATE task_timers c SET tier = m.tier, expires_at = m.expires_at,
        remind_at = taskjuice_remind_at(now(), m.expires_at, m.remind_before, m.remind_default)
    FROM moved m
    WHERE c.task_id = ANY (ARRAY(SELECT id FROM moved WHERE action = 'escalate'))
      AND c.task_id = m.id
), callbacks AS (
    -- The body is built from the audit row when it is sent (bot.platform.callbacks.approval_event);
    -- the webhook-id is the audit row's, so it is fixed the moment the outcome is.
    INSERT INTO outbox (kind, payload, task_id, ordering_key, message_id)
    SELECT $1::text, jsonb_build_object('decision_id', m.decision_id), m.id,
           'callback:' || m.id, 'msg_timeout_' || m.decision_id
    FROM moved m
), refresh AS (
    -- One item for the whole batch: the channels refresh every task in it. It names the
    -- batch's audit rows (see `timeout_changes`): a few bytes each, where the tasks and their
    -- events spelled out made a payload large enough to be compressed on every batch.
    INSERT INTO outbox (kind, payload, message_id)
    SELECT $2::text, jsonb_build_object('timeouts', jsonb_agg(m.decision_id)),
           'msg_' || replace(gen_random_uuid()::text, '-', '')
    FROM moved m
    HAVING count(*) > 0
)
SELECT action, count(*)::int AS n FROM moved GROUP BY action
"""

# What `_EXPIRE` writes: $1 the callbacks' kind, $2 the channels' refresh.
_KINDS = (OutboxKind.CALLBACK.value, OutboxKind.TASK_CHANGED.value)

_ANY_DUE = "SELECT EXISTS (SELECT FROM task_timers WHERE expires_at <= now())"

_REMIND = """
WITH due AS (
    SELECT task_id FROM task_timers
    WHERE remind_at <= now()
    ORDER BY remind_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), reminded AS (
    UPDATE task_timers c SET remind_at = NULL
    WHERE c.task_id = ANY (ARRAY(SELECT task_id FROM due))  -- by index, as in `_EXPIRE`
    RETURNING c.task_id, c.tier
), queued AS (
    INSERT INTO outbox (kind, payload, message_id)
    SELECT $2::text,
           jsonb_build_object('changes', jsonb_agg(jsonb_build_object(
               'task_id', r.task_id::text, 'event', 'reminder', 'tier', r.tier))),
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
    await conn.execute(_WALK_IN_ORDER)
    if task_id is None:
        # The batch statement is planned at its first run on a connection and keeps that plan
        # until the tables are next analyzed, so it never runs when nothing is due: planned
        # while the tables held nothing at all, it read the whole of `tasks` for every task it
        # took from the next backlog (a batch of 500 took 40 s in a 100,000-task catch-up).
        if not await conn.fetchval(_ANY_DUE):
            return {}
        rows = await conn.fetch(_EXPIRE.format(only_task="", limit=int(limit)), *_KINDS)
    else:
        # Both sides named by id, so neither is found by joining (see above).
        only = "AND c.task_id = $3 AND t.id = $3"
        rows = await conn.fetch(_EXPIRE.format(only_task=only, limit=1), *_KINDS, task_id)
    return {r["action"]: r["n"] for r in rows}


async def remind_due(conn: asyncpg.Connection, *, limit: int) -> int:
    """Queue one reminder for up to `limit` tasks whose reminder time has come (in the caller's
    transaction when there is one)."""
    await conn.execute(_WALK_IN_ORDER)
    count: int = await conn.fetchval(_REMIND, limit, OutboxKind.TASK_CHANGED.value)
    return count


async def timeout_changes(
    conn: asyncpg.Connection, decision_ids: list[int]
) -> list[tuple[UUID, str]]:
    """What a sweep batch did, from its audit rows: (task, `escalated` or `expired`)."""
    rows = await conn.fetch(
        "SELECT task_id, action FROM decisions WHERE id = ANY($1::bigint[]) ORDER BY id",
        decision_ids,
    )
    return [(r["task_id"], "escalated" if r["action"] == "escalate" else "expired") for r in rows]
