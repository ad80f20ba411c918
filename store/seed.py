"""Bulk rows for load and plan checks (the benchmark, the tests of query plans): many pending
tasks at once, in one statement. Never used by `serve`."""

from __future__ import annotations

import asyncpg

__all__ = ["insert_overdue_tasks", "pending_tasks"]


async def pending_tasks(conn: asyncpg.Connection, count: int, *, approver: str) -> list[str]:
    """`count` pending tasks whose one approver is the Slack user `approver`; their ids."""
    rows = await conn.fetch(
        """
        WITH made AS (
            INSERT INTO tasks (id, workspace, run_id, workflow, summary, reversibility,
                required_approvals, timeout_policy, deliver, content_hash, tier_count,
                expires_at)
            SELECT gen_random_uuid(), 'bench', 'run_' || n, '{"id": "wf", "name": "Load"}',
                   'Load ' || n, 'recoverable', 1, 'deny', '{"slack": false, "email": false}',
                   'hash', 1, now() + interval '1 day'
            FROM generate_series(1, $1) AS n RETURNING id, expires_at
        ), timers AS (
            INSERT INTO task_timers (task_id, tier, expires_at) SELECT id, 0, expires_at FROM made
        ), tiers AS (INSERT INTO approver_tiers (task_id, tier) SELECT id, 0 FROM made)
        INSERT INTO approvers (task_id, tier, slack_user_id) SELECT id, 0, $2 FROM made
        RETURNING task_id
        """,
        count,
        approver,
    )
    return [str(r["task_id"]) for r in rows]


async def insert_overdue_tasks(
    conn: asyncpg.Connection,
    count: int,
    *,
    policies: tuple[str, ...] = ("deny",),
    next_tier_expires_in: int = 3600,
    workspace: str = "bench",
    staggered: bool = False,
) -> None:
    """`count` pending tasks whose first tier expired a minute ago, policies taken in turn.

    `escalate` tasks get one escalation tier of `next_tier_expires_in` seconds. `staggered`
    tasks were each created and expired a second before the next, so none share a time.
    """
    await conn.execute(
        """
        WITH made AS (
            INSERT INTO tasks (id, workspace, run_id, workflow, summary, reversibility,
                required_approvals, timeout_policy, deliver, content_hash, tier_count,
                expires_at, created_at)
            SELECT gen_random_uuid(), $2, 'run_' || n, '{"id": "wf", "name": "Load"}',
                   'Synthetic approval ' || n, 'recoverable', 1,
                   ($3::text[])[1 + n % cardinality($3::text[])], '{}', 'hash',
                   CASE WHEN ($3::text[])[1 + n % cardinality($3::text[])] = 'escalate'
                        THEN 2 ELSE 1 END,
                   now() - interval '1 minute' - make_interval(secs => n * $5::int),
                   now() - interval '2 minutes' - make_interval(secs => n * $5::int)
            FROM generate_series(1, $1) AS n
            RETURNING id, tier_count, expires_at
        ), timers AS (
            INSERT INTO task_timers (task_id, tier, expires_at) SELECT id, 0, expires_at FROM made
        ), tiers AS (
            INSERT INTO approver_tiers (task_id, tier, expires_in)
            SELECT id, t, CASE WHEN t = 0 THEN 60 ELSE $4 END
            FROM made, generate_series(0, tier_count - 1) AS t
        )
        INSERT INTO approvers (task_id, tier, email)
        SELECT id, t, 'approver' || t || '@bench.test'
        FROM made, generate_series(0, tier_count - 1) AS t
        """,
        count,
        workspace,
        list(policies),
        next_tier_expires_in,
        int(staggered),
    )
