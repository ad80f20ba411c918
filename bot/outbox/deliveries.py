"""What every channel does with a message it cannot deliver: record why, and say so once."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from uuid import UUID

import asyncpg

from store import deliveries, outbox
from store.database import Connections
from store.outbox import OutboxItem

__all__ = ["NEW_MESSAGE", "give_up", "queue", "queue_planned", "retrying"]

log = logging.getLogger(__name__)


async def give_up(pool: Connections, delivery_id: int, error: str, *, channel: str) -> None:
    """Mark a delivery failed (the task view shows why) and log it as one event."""
    async with pool.acquire() as conn:
        await deliveries.mark_failed(conn, delivery_id, error)
    log.warning(
        "delivery failed",
        extra={"event": f"{channel}.delivery_failed", "delivery": delivery_id, "error": error},
    )


async def retrying(pool: Connections, delivery_id: int, error: str) -> None:
    """A transient failure (the outbox retries): the delivery stays queued and shows why; past
    half of DELIVERY_GRACE the sweeper moves its approver to another channel."""
    async with pool.acquire() as conn:
        await deliveries.note_error(conn, delivery_id, error)


# Which task changes bring new messages (and of which purpose); other changes update them.
NEW_MESSAGE = {"created": "request", "escalated": "request", "reminder": "reminder"}


async def queue(
    conn: asyncpg.Connection,
    change: OutboxItem,
    kind: str,
    deliveries: Iterable[tuple[int, UUID]],
    *,
    channel: str,
) -> None:
    """Queue one item about each of `deliveries` (delivery id, task id), in one statement.
    Items about one delivery leave in order (a post before its updates); ids derive from the
    change, so handling it twice queues nothing twice. The items keep the change's place in
    line: under a burst of new requests, the first request's DM goes before the last
    request's change is even looked at (and a team's Slack lookups start while its budget is
    fresh)."""
    await outbox.enqueue_all(
        conn,
        kind,
        _items(kind, deliveries, channel=channel, named_by=change.message_id),
        # A change that failed and was retried has its place no longer: its messages queue
        # from now, so they never look older than they are (readiness, stalled-work alerts).
        place=change.created_at if change.attempts <= 1 else None,
    )


async def queue_planned(
    conn: asyncpg.Connection,
    kind: str,
    planned: Iterable[tuple[int, UUID]],
    *,
    channel: str,
    origin: str,
) -> None:
    """Queue the sending of deliveries planned outside a task change (a revoked Slack team's
    approvals mailed, a failover to the other channel), one item each; `origin` names why, and
    with the delivery fixes the item's id, so queueing one twice sends it once."""
    await outbox.enqueue_all(conn, kind, _items(kind, planned, channel=channel, named_by=origin))


def _items(
    kind: str, deliveries: Iterable[tuple[int, UUID]], *, channel: str, named_by: str
) -> list[outbox.NewItem]:
    """One item about each delivery: ordered with the delivery's other items, and with an id
    `named_by` what queued it, so queueing it twice sends it once."""
    return [
        outbox.NewItem(
            payload={"delivery_id": delivery_id},
            task_id=task_id,
            ordering_key=f"{channel}:{delivery_id}",
            message_id=f"{named_by}:{kind}:{delivery_id}",
        )
        for delivery_id, task_id in deliveries
    ]
