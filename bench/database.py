"""A fresh, migrated benchmark database on $DATABASE_URL's server or an embedded one."""

from __future__ import annotations

import os
from pathlib import Path

from store.database import connect, embedded_database_url, recreate_database
from store.migrate import apply_migrations

__all__ = ["fresh_database", "server_url"]


def server_url() -> str:
    """$DATABASE_URL, or the embedded PostgreSQL under ./.taskjuice-bench."""
    return os.environ.get("DATABASE_URL") or embedded_database_url(Path(".taskjuice-bench"))


async def fresh_database(server: str, name: str = "taskjuice_bench") -> str:
    """Drop and recreate `name`, migrate it, and return its URL."""
    url = await recreate_database(server, name)
    conn = await connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return url
