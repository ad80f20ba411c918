"""Planner statistics kept in step with sudden growth.

PostgreSQL plans from the statistics of the last ANALYZE, and a connection keeps a statement's
generic plan until they change. Autovacuum analyzes a table once a tenth of it has changed, at
its next visit (up to a minute, longer when it is busy elsewhere); a table that jumps from a few
hundred rows to tens of thousands in that time — a new install's first burst of clicks, a bulk
import — is meanwhile read with plans made for a few hundred: a whole-table scan for every task
of a decision batch. The sweeper looks every few seconds for a table of ours holding more than
twice the rows its statistics say and analyzes it, which also makes every connection plan its
statements anew.
"""

from __future__ import annotations

import asyncpg

__all__ = ["outgrown", "refresh_outgrown"]

# Never-analyzed tables count as this many rows, so small tables are left to autovacuum.
_FLOOR = 500

_OUTGROWN = """
SELECT s.relname
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND s.n_live_tup > 2 * greatest(c.reltuples, $1)
ORDER BY s.relname
"""


async def outgrown(conn: asyncpg.Connection) -> list[str]:
    """Our tables holding more than twice the rows their statistics say (or, never analyzed,
    more than twice a small floor), by the server's running counts."""
    return [r["relname"] for r in await conn.fetch(_OUTGROWN, _FLOOR)]


async def refresh_outgrown(conn: asyncpg.Connection) -> list[str]:
    """ANALYZE each outgrown table; returns the names of those analyzed. A table autovacuum is
    working on at that moment is skipped (it is being analyzed anyway), and so, with a warning
    from the server, is one the service's database user may not analyze."""
    tables = await outgrown(conn)
    for table in tables:
        await conn.execute(f"ANALYZE (SKIP_LOCKED) {_quoted(table)}")
    still = set(await outgrown(conn)) if tables else set()
    return [table for table in tables if table not in still]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
