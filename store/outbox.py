"""The transactional outbox: what must reach the outside world, claimed under leases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

__all__ = [
    "NOTIFY_CHANNEL",
    "NewItem",
    "OutboxItem",
    "OutboxStats",
    "TenantQueue",
    "claim_due",
    "enqueue",
    "enqueue_all",
    "enqueue_unless_waiting",
    "forget_sent",
    "list_items",
    "mark_done",
    "mark_failed",
    "next_turn",
    "release",
    "retry",
    "stats",
    "stats_by_tenant",
    "untried",
]

NOTIFY_CHANNEL = "taskjuice_outbox"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """One claimed piece of outbound work."""

    id: int
    kind: str
    task_id: UUID | None
    payload: dict[str, Any]
    message_id: str
    attempts: int
    created_at: datetime
    tenant: str = ""  # the TaskJuice workspace whose turn it waited for (migration 0014)
    priority: int = 1  # 0 urgent .. 3 App Home refreshes (migration 0014)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStats:
    """What /metrics shows about the outbox."""

    pending: int
    oldest_age: float
    dead: int
    queues: tuple[TenantQueue, ...] = ()  # per tenant and priority


async def enqueue(
    conn: asyncpg.Connection,
    kind: str,
    payload: dict[str, Any],
    *,
    task_id: UUID | None = None,
    ordering_key: str | None = None,
    message_id: str | None = None,
) -> str:
    """Add work in the caller's transaction; wake dispatchers when it commits.

    Returns the item's message id (for callbacks, the `webhook-id` every retry repeats). A
    given `message_id` that is already queued adds nothing, so re-running a fan-out is harmless.
    """
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    item = NewItem(
        payload=payload, message_id=message_id, task_id=task_id, ordering_key=ordering_key
    )
    await enqueue_all(conn, kind, [item])
    return message_id


@dataclass(frozen=True, slots=True, kw_only=True)
class NewItem:
    """One piece of work to add with others of its kind (see `enqueue_all`)."""

    payload: dict[str, Any]
    message_id: str
    task_id: UUID | None = None
    ordering_key: str | None = None


async def enqueue_all(
    conn: asyncpg.Connection,
    kind: str,
    items: Sequence[NewItem],
    *,
    place: datetime | None = None,
) -> None:
    """Add many items of one kind in one statement, in order, in the caller's transaction;
    as with `enqueue`, a message id already queued adds nothing.

    `place`: the items take their place in line from then (no later than now) rather than
    from now, as the consequences of a change keep the change's place: work queued after it
    does not go before them at the same priority."""
    if not items:
        return
    # A statement trigger (migration 0004) NOTIFYs the dispatchers when this commits.
    await conn.execute(
        "INSERT INTO outbox (kind, payload, task_id, ordering_key, message_id, next_attempt_at)"
        " SELECT $1, u.payload::jsonb, u.task_id, u.ordering_key, u.message_id,"
        "        least(now(), coalesce($6::timestamptz, now()))"
        " FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[]) WITH ORDINALITY"
        "  AS u(payload, task_id, ordering_key, message_id, n)"
        " ORDER BY u.n ON CONFLICT (message_id) DO NOTHING",
        kind,
        [json.dumps(item.payload) for item in items],
        [item.task_id for item in items],
        [item.ordering_key for item in items],
        [item.message_id for item in items],
        place,
    )


async def enqueue_unless_waiting(
    conn: asyncpg.Connection, kind: str, payload: dict[str, Any], *, ordering_key: str
) -> None:
    """Add work unless an item of the same key is already waiting, unclaimed: that one will
    run after this transaction commits and see everything it wrote, so one is enough."""
    await conn.execute(
        "INSERT INTO outbox (kind, payload, ordering_key, message_id)"
        " SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT FROM outbox"
        "  WHERE ordering_key = $3 AND status = 'pending' AND claimed_by IS NULL)",
        kind,
        payload,
        ordering_key,
        f"msg_{uuid.uuid4().hex}",
    )


# The claim is a function (migrations 0009, 0014) so that its plan walks the due indexes in
# order and looks every other row up by index, however stale the statistics or the
# connection's cached plan. It serves tenants (TaskJuice workspaces) in turn, up to
# `per_tenant` items each per round, the most urgent first; only the oldest pending item of an
# ordering key is claimable (a post before its updates).
_CLAIM = (
    "SELECT id, kind, task_id, payload, message_id, attempts, created_at, tenant, priority"
    " FROM taskjuice_claim_outbox($1, $2, $3, $4, $5)"
)


async def claim_due(
    conn: asyncpg.Connection,
    *,
    limit: int,
    lease: float,
    worker: str,
    per_tenant: int = 8,
    after_tenant: str = "",
) -> list[OutboxItem]:
    """Claim up to `limit` due items for `lease` seconds; an unfinished claim then falls due.

    Tenants are served in turn, starting after `after_tenant` (pass `next_turn()` of the
    previous claim). The items come most urgent first, then in the order they were queued."""
    rows = await conn.fetch(_CLAIM, limit, lease, worker, per_tenant, after_tenant)
    return [OutboxItem(**dict(r)) for r in sorted(rows, key=lambda r: (r["priority"], r["id"]))]


def next_turn(claimed: Sequence[OutboxItem], after_tenant: str) -> str:
    """Where the next claim starts: after the last tenant this claim served, in its turn order
    (the tenants after `after_tenant`, then the others)."""
    served = {item.tenant for item in claimed}
    if not served:
        return after_tenant
    later = [t for t in served if t > after_tenant]
    return max(later) if later else max(served)


async def mark_done(conn: asyncpg.Connection, item_ids: list[int]) -> None:
    """Record items as sent (in one statement, however many)."""
    await conn.execute(
        "UPDATE outbox SET status = 'done', finished_at = now(), last_error = NULL"
        " WHERE id = ANY($1::bigint[]) AND status = 'pending'",
        item_ids,
    )


async def mark_failed(
    conn: asyncpg.Connection,
    item_id: int,
    *,
    delay: float,
    error: str,
    max_age: float | None,
    attempted: bool = True,
) -> str:
    """Schedule the next attempt, or dead-letter the item once it is older than `max_age`.

    `max_age=None` dead-letters at once (a permanent failure). `attempted=False`: the item
    only waited its turn (pacing, the Slack budget) and nothing was sent, so the claim does
    not count as an attempt. Returns the new status.
    """
    status: str | None = await conn.fetchval(
        """
        UPDATE outbox SET
            status = CASE WHEN $4::float8 IS NULL
                               OR created_at + make_interval(secs => $4::float8) < now()
                          THEN 'dead' ELSE 'pending' END,
            next_attempt_at = now() + make_interval(secs => $2),
            last_error = left($3, 2000), claimed_by = NULL,
            attempts = CASE WHEN $5 THEN attempts ELSE greatest(attempts - 1, 0) END,
            finished_at = CASE WHEN $4::float8 IS NULL
                                    OR created_at + make_interval(secs => $4::float8) < now()
                               THEN now() END
        WHERE id = $1 AND status = 'pending'
        RETURNING status
        """,
        item_id,
        delay,
        error,
        max_age,
        attempted,
    )
    return status or "done"


async def release(conn: asyncpg.Connection, item_ids: list[int], worker: str) -> None:
    """Give back claims this worker will not finish (shutdown), due again at once."""
    await conn.execute(
        "UPDATE outbox SET next_attempt_at = now(), claimed_by = NULL,"
        " attempts = greatest(attempts - 1, 0)"
        " WHERE id = ANY($1::bigint[]) AND status = 'pending' AND claimed_by = $2",
        item_ids,
        worker,
    )


async def stats(conn: asyncpg.Connection) -> OutboxStats:
    row = await conn.fetchrow(
        """
        SELECT
          (SELECT count(*) FROM outbox WHERE status = 'pending') AS pending,
          (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)
             FROM outbox WHERE status = 'pending') AS oldest_age,
          (SELECT count(*) FROM outbox WHERE status = 'dead') AS dead
        """
    )
    return OutboxStats(
        pending=row["pending"],
        oldest_age=float(row["oldest_age"]),
        dead=row["dead"],
        queues=tuple(await stats_by_tenant(conn)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantQueue:
    """Pending work of one tenant at one priority, for /metrics."""

    tenant: str
    priority: int
    depth: int
    oldest_age: float


async def stats_by_tenant(conn: asyncpg.Connection) -> list[TenantQueue]:
    """Pending items and the age of the oldest, per tenant and priority."""
    rows = await conn.fetch(
        "SELECT tenant, priority, count(*) AS depth,"
        " extract(epoch FROM now() - min(created_at)) AS oldest_age"
        " FROM outbox WHERE status = 'pending' GROUP BY tenant, priority"
    )
    return [
        TenantQueue(
            tenant=r["tenant"],
            priority=r["priority"],
            depth=r["depth"],
            oldest_age=float(r["oldest_age"]),
        )
        for r in rows
    ]


async def list_items(
    conn: asyncpg.Connection, *, status: str, limit: int, after: int | None
) -> list[dict[str, Any]]:
    """A page of outbox items in one status, newest first."""
    rows = await conn.fetch(
        """
        SELECT id, kind, task_id, message_id, status, attempts, last_error, payload,
               created_at, next_attempt_at, finished_at
        FROM outbox WHERE status = $1 AND ($2::bigint IS NULL OR id < $2)
        ORDER BY id DESC LIMIT $3
        """,
        status,
        after,
        limit,
    )
    return [dict(r) for r in rows]


async def retry(conn: asyncpg.Connection, item_id: int) -> bool:
    """Put a dead-lettered item back in line, restarting its retry window."""
    done = await conn.fetchval(
        "UPDATE outbox SET status = 'pending', next_attempt_at = now(), created_at = now(),"
        " finished_at = NULL WHERE id = $1 AND status = 'dead' RETURNING true",
        item_id,
    )
    if done:
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return bool(done)


async def forget_sent(conn: asyncpg.Connection, older_than: float, *, limit: int = 5000) -> int:
    """Delete up to `limit` items sent more than `older_than` seconds ago; returns how many.
    Dead letters stay until an operator retries them."""
    result: str = await conn.execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status = 'done'"
        " AND finished_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)",
        older_than,
        limit,
    )
    return int(result.split()[-1])


async def untried(conn: asyncpg.Connection, older_than: float) -> tuple[int, float]:
    """Items due for more than `older_than` seconds that no dispatcher has tried yet: how
    many, and how long the oldest has been due (seconds)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS waiting,"
        " coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0) AS oldest"
        " FROM outbox WHERE status = 'pending' AND attempts = 0"
        " AND next_attempt_at < now() - make_interval(secs => $1)",
        older_than,
    )
    return int(row["waiting"]), float(row["oldest"])
