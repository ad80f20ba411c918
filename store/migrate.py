"""Numbered SQL migrations, applied once each under a PostgreSQL advisory lock."""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

__all__ = ["MIGRATION_LOCK", "apply_migrations", "migration_files"]

log = logging.getLogger(__name__)

# Any constant works; every replica must use the same one.
MIGRATION_LOCK = 0x7A5C_1A1C_E0B0


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every `NNNN_name.sql`, in order."""
    folder = resources.files("store") / "migrations"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def apply_migrations(conn: asyncpg.Connection, *, until: int | None = None) -> list[str]:
    """Apply what is missing (up to version `until`, if given); safe to call from many
    replicas at once."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done or (until is not None and version > until):
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("migration applied", extra={"event": "migration.applied", "migration": name})
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied
