"""What a change of a task or an alert must cause outside: outbox rows, in the same transaction.

Channels (Slack, email) plug in through `ChannelPlugin`: the dispatcher hands them each
`task.changed` and `alert.changed` item, and they queue their own posts, updates and mails.
Whoever changes a task (decisions, the sweeper, the API) only calls the functions here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from bot.domain import OutboxKind
from store import deliveries, outbox, sweep, tasks
from store.database import Connections
from store.outbox import OutboxItem

__all__ = [
    "ALERT_CHANGED",
    "CALLBACK",
    "TASK_CHANGED",
    "ChannelPlugin",
    "Fanout",
    "TaskChange",
    "alert_changed",
    "task_changed",
]

# The kinds are named once, in `bot.domain.OutboxKind`: the batch statements of
# `store.tasks` and `store.sweep` write the same kinds, and take them from there.
CALLBACK = OutboxKind.CALLBACK
TASK_CHANGED = OutboxKind.TASK_CHANGED
ALERT_CHANGED = OutboxKind.ALERT_CHANGED


async def task_changed(
    conn: asyncpg.Connection,
    task_id: UUID,
    event: str,
    *,
    decision_id: int | None = None,
) -> str | None:
    """Queue the platform callback for audit row `decision_id` (if any) and the channels'
    refresh for one task change.

    Returns the callback's `webhook-id`. Callbacks of one task leave in the order written.
    """
    webhook_id = None
    if decision_id is not None:
        webhook_id = await outbox.enqueue(
            conn,
            CALLBACK,
            {"decision_id": decision_id},
            task_id=task_id,
            ordering_key=f"callback:{task_id}",
        )
    change = {"task_id": str(task_id), "event": event}
    await outbox.enqueue(conn, TASK_CHANGED, {"changes": [change]}, task_id=task_id)
    return webhook_id


async def alert_changed(conn: asyncpg.Connection, alert_id: int, event: str) -> None:
    """Queue the channels' post or update of one alert's message."""
    await outbox.enqueue(conn, ALERT_CHANGED, {"alert_id": alert_id, "event": event})


async def workflow_callback(conn: asyncpg.Connection, body: dict[str, Any]) -> str:
    """Queue a callback that is not about a task (e.g. `workflow.resume_requested`)."""
    return await outbox.enqueue(conn, CALLBACK, {"body": body})


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskChange:
    """One change of a task, with what channels plan messages by: the task's status, current
    tier and delivery options as the fan-out read them (None if the task is gone)."""

    task_id: UUID
    event: str
    state: Mapping[str, Any] | None


class ChannelPlugin(Protocol):
    """A delivery channel: turns task and alert changes into its own outbox work."""

    async def tasks_changed(
        self, conn: asyncpg.Connection, item: OutboxItem, changes: Sequence[TaskChange]
    ) -> None: ...

    async def alert_changed(
        self, conn: asyncpg.Connection, item: OutboxItem, alert_id: int, event: str
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Fanout:
    """Hands change items to every enabled channel in one transaction.

    A channel derives its items' message ids from `item.message_id`, so running one change
    twice (after a crash) queues nothing twice.
    """

    pool: Connections
    channels: Sequence[ChannelPlugin]
    # DELIVERY_GRACE: how long a new tier has to reach one of its approvers.
    grace: float = 600.0

    async def task(self, item: OutboxItem) -> None:
        """`payload.changes`: one change or a batch of reminders; `payload.timeouts`: the audit
        rows of a sweep batch."""
        if not self.channels:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            if "timeouts" in item.payload:
                events = await sweep.timeout_changes(conn, item.payload["timeouts"])
            else:
                events = [(UUID(c["task_id"]), c["event"]) for c in item.payload["changes"]]
            # One read for the whole item, however many tasks a batch changed.
            states = await tasks.delivery_states(conn, list({task_id for task_id, _ in events}))
            changes = [
                TaskChange(task_id=task_id, event=event, state=states.get(task_id))
                for task_id, event in events
            ]
            for channel in self.channels:
                await channel.tasks_changed(conn, item, changes)
            # The tier's messages are planned: from now on whether they reach anyone is watched.
            await deliveries.watch(
                conn,
                [
                    (c.task_id, c.state["tier"])
                    for c in changes
                    if c.event in ("created", "escalated")
                    and c.state is not None
                    and c.state["status"] == "pending"
                ],
                self.grace,
            )

    async def alert(self, item: OutboxItem) -> None:
        if not self.channels:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            for channel in self.channels:
                await channel.alert_changed(
                    conn, item, int(item.payload["alert_id"]), item.payload["event"]
                )
