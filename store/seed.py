"""Bulk rows for load and plan checks (the benchmark, the tests of query plans): many pending
tasks at once, in one statement. Never used by `serve`."""

from __future__ import annotations

import asyncpg

__all__ = ["pending_tasks"]


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
