"""A fresh, migrated benchmark database on $DATABASE_URL's server or an embedded one."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from store.database import connect, embedded_database_url
from store.migrate import apply_migrations

__all__ = ["fresh_database", "server_url"]


def server_url() -> str:
    """$DATABASE_URL, or the embedded PostgreSQL under ./.taskjuice-bench."""
    return os.environ.get("DATABASE_URL") or embedded_database_url(Path(".taskjuice-bench"))


async def fresh_database(server: str, name: str = "taskjuice_bench") -> str:
    """Drop and recreate `name`, migrate it, and return its URL."""
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = urlunsplit(urlsplit(server)._replace(path="/" + name))
    conn = await connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return url
