"""Stored Slack tokens re-encrypted under the newest key, row by row (key rotation)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

__all__ = ["ENCRYPTED_COLUMNS", "encrypted_row_ids", "reencrypt_row"]

# Which columns of which table hold ciphertexts (for key rotation).
ENCRYPTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "slack_installations": ("bot_token", "bot_refresh_token", "incoming_webhook_url"),
    "slack_installers": ("user_token", "user_refresh_token"),
}


async def encrypted_row_ids(conn: asyncpg.Connection, table: str) -> list[int]:
    """Ids of the rows of `table` (one of ENCRYPTED_COLUMNS) that hold any ciphertext."""
    columns = ENCRYPTED_COLUMNS[table]
    any_set = " OR ".join(f"{c} IS NOT NULL" for c in columns)
    rows = await conn.fetch(f"SELECT id FROM {table} WHERE {any_set} ORDER BY id")  # noqa: S608 - names from ENCRYPTED_COLUMNS
    return [r["id"] for r in rows]


async def reencrypt_row(
    conn: asyncpg.Connection, table: str, row_id: int, rewrite: Callable[[str], str]
) -> bool:
    """Rewrite each ciphertext of one row with `rewrite`, under the row's lock, so a token
    refreshed meanwhile is never overwritten by its predecessor. False if the row is gone."""
    columns = ENCRYPTED_COLUMNS[table]
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {', '.join(columns)} FROM {table} WHERE id = $1 FOR UPDATE",  # noqa: S608 - names from ENCRYPTED_COLUMNS
            row_id,
        )
        if row is None:
            return False
        values = [None if row[c] is None else rewrite(row[c]) for c in columns]
        sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, 2))
        await conn.execute(f"UPDATE {table} SET {sets} WHERE id = $1", row_id, *values)  # noqa: S608 - names from ENCRYPTED_COLUMNS
    return True
