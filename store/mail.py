"""Email queries: magic links, reply addresses, and inbound mail already handled."""

from __future__ import annotations

import base64
import secrets
from typing import Any
from uuid import UUID

import asyncpg

__all__ = [
    "claim_inbound",
    "claim_webhook_token",
    "link",
    "link_for",
    "mark_link_used",
    "reply_target",
    "reply_token_for",
    "webhook_token_used",
]


async def link_for(
    conn: asyncpg.Connection, task_id: UUID, approver_id: int, tier: int, content_hash: str
) -> int:
    """The magic link of one approver and tier (made once, reused by every mail)."""
    made = await conn.fetchval(
        "INSERT INTO magic_links (task_id, approver_id, tier, content_hash)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (task_id, approver_id, tier) DO NOTHING"
        " RETURNING id",
        task_id,
        approver_id,
        tier,
        content_hash,
    )
    if made is not None:
        return int(made)
    found: int = await conn.fetchval(
        "SELECT id FROM magic_links WHERE task_id = $1 AND approver_id = $2 AND tier = $3",
        task_id,
        approver_id,
        tier,
    )
    return found


async def link(conn: asyncpg.Connection, link_id: int) -> dict[str, Any] | None:
    """The link, its approver's email and the reversibility of its task (which the
    confirmation form needs before anything is decided)."""
    row = await conn.fetchrow(
        "SELECT l.*, a.email AS approver_email, t.reversibility FROM magic_links l"
        " JOIN approvers a ON a.id = l.approver_id JOIN tasks t ON t.id = l.task_id"
        " WHERE l.id = $1",
        link_id,
    )
    return dict(row) if row else None


async def mark_link_used(conn: asyncpg.Connection, link_id: int) -> None:
    await conn.execute(
        "UPDATE magic_links SET used_at = coalesce(used_at, now()) WHERE id = $1", link_id
    )


async def reply_token_for(
    conn: asyncpg.Connection, task_id: UUID, approver_id: int, tier: int
) -> str:
    """The random local part of one approver's Reply-To address for one tier."""
    fresh = base64.b32encode(secrets.token_bytes(15)).decode().lower()
    made = await conn.fetchval(
        "INSERT INTO reply_tokens (token, task_id, approver_id, tier) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (task_id, approver_id, tier) DO NOTHING RETURNING token",
        fresh,
        task_id,
        approver_id,
        tier,
    )
    if made is not None:
        return str(made)
    found: str = await conn.fetchval(
        "SELECT token FROM reply_tokens WHERE task_id = $1 AND approver_id = $2 AND tier = $3",
        task_id,
        approver_id,
        tier,
    )
    return found


async def reply_target(conn: asyncpg.Connection, token: str) -> dict[str, Any] | None:
    """Task, approver and tier a reply address stands for."""
    row = await conn.fetchrow(
        "SELECT r.task_id, r.approver_id, r.tier, a.email AS approver_email"
        " FROM reply_tokens r JOIN approvers a ON a.id = r.approver_id WHERE r.token = $1",
        token.lower(),
    )
    return dict(row) if row else None


async def claim_inbound(conn: asyncpg.Connection, key: str, outcome: str) -> bool:
    """Record an inbound message as handled; False if it was handled before."""
    took = await conn.fetchval(
        "INSERT INTO inbound_messages (message_key, outcome) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING true",
        key[:500],
        outcome,
    )
    return bool(took)


async def claim_webhook_token(conn: asyncpg.Connection, token: str) -> bool:
    """False if a provider's webhook token was seen before (a replay)."""
    took = await conn.fetchval(
        "INSERT INTO inbound_webhook_tokens (token) VALUES ($1) ON CONFLICT DO NOTHING"
        " RETURNING true",
        token[:200],
    )
    return bool(took)


async def webhook_token_used(conn: asyncpg.Connection, token: str) -> bool:
    """Whether a provider's webhook token was claimed before (checked before handling)."""
    found = await conn.fetchval(
        "SELECT true FROM inbound_webhook_tokens WHERE token = $1", token[:200]
    )
    return bool(found)
