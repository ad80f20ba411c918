"""What readiness and a start-up without migrations ask of the database."""

from __future__ import annotations

import asyncpg

from store.migrate import migration_files

__all__ = ["missing_migrations", "oldest_due_age"]


async def missing_migrations(conn: asyncpg.Connection) -> list[str]:
    """The migrations this version needs that the database lacks, in order. Migrations the
    database has beyond them (a newer version's, during a rolling update) are fine."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done: set[int] = set()
    if exists:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [name for version, name, _ in migration_files() if version not in done]


async def oldest_due_age(conn: asyncpg.Connection) -> float:
    """Seconds the oldest outbox item that a dispatcher could claim now has been due (0 when
    none is). Items waiting behind an earlier one of their ordering key, or waiting out a
    retry's backoff or a claim's lease, are not due work, so a Slack outage that the outbox
    is riding out does not count as workers falling behind."""
    age = await conn.fetchval(
        """
        SELECT extract(epoch FROM now() - o.next_attempt_at) FROM outbox o
        WHERE o.status = 'pending' AND o.next_attempt_at <= now()
          AND (o.ordering_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM outbox p
                WHERE p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id))
        ORDER BY o.next_attempt_at, o.id
        LIMIT 1
        """
    )
    return float(age or 0.0)
