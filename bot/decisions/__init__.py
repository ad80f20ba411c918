"""The one decision path: every channel's approve/deny, and every other end of a task.

`decide()` authorizes the person against the current tier, applies the self-approval rule and
the quorum — both by person, not by name: an email and a Slack user the bot knows to be one
person are one voter (see `bot.people`) — and records the audit row, the outcome and the
outbox rows in one statement. It reads the task in one statement and writes only if the
task's version is unchanged, so of concurrent deciders of one task exactly one write wins
each round and the others look again at what it did: a later vote counts towards the same
quorum, a click after the end is told who ended it. No lock is held between the two
statements. Decisions arriving together share those two statements (see `batch.Batch`). Slack
is never asked inside them: a person the cache cannot place is looked up between rounds.

The rules themselves are `rules.judge()`, pure; this module reads, judges and writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from uuid import UUID

import asyncpg

from bot.decisions.batch import Batch
from bot.decisions.rules import (
    MAX_REASON,
    NO_SUCH_TASK,
    DecisionResult,
    Preview,
    Request,
    Ruling,
    Verdict,
    count,
    ended,
    judge,
)
from bot.domain import Actor, AuditAction, Channel, Outcome, Resolution, TaskStatus
from bot.errors import NotFound
from bot.people import directory_for
from bot.runtime.metrics import Metrics
from store import sweep, tasks

__all__ = ["DecisionResult", "Preview", "Verdict", "cancel", "decide", "preview"]


async def decide(
    pool: asyncpg.Pool,
    *,
    task_id: UUID,
    actor: Actor,
    outcome: Outcome,
    via: Channel,
    reason: str | None = None,
    client: dict[str, Any] | None = None,
    content_hash: str | None = None,
    tier: int | None = None,
    metrics: Metrics | None = None,
) -> DecisionResult:
    """Record one person's approve or deny; see `Verdict` for what can come of it.

    `content_hash` and `tier`, when given, are what the person was shown: if the task has
    changed since (different content, or escalated to another tier), nothing is recorded.

    The actor is one person whatever name they come by: an email and a Slack user that the
    Slack user cache (or an approver or audit row) ties together are the same voter, and the
    same requester. When what the bot knows cannot tell, Slack is asked once about the actor,
    outside any statement (`bot.people.SlackDirectory`); if it cannot answer either, an
    approval is refused (`Verdict.UNRESOLVED`) rather than counted as a new person.

    Decisions arriving while others are being written are read and written together, one
    statement each for the whole batch (see `bot.decisions.batch.Batch`); each is judged on its own.
    """
    request = Request(
        task_id=task_id,
        actor=actor,
        outcome=outcome,
        via=via,
        reason=reason.strip()[:MAX_REASON] or None if reason else None,
        client=client,
        content_hash=content_hash,
        tier=tier,
    )
    result = await _settle(pool, request, metrics)
    if result.ask:
        directory = directory_for(pool)
        learned = await directory.look_up(result.ask) if directory is not None else None
        if learned is not None:
            result = await _settle(pool, replace(request, learned=learned), metrics)
    return result


async def preview(
    pool: asyncpg.Pool,
    *,
    task_id: UUID,
    actor: Actor,
    outcome: Outcome,
    via: Channel,
    content_hash: str | None = None,
    tier: int | None = None,
) -> Preview:
    """What `decide()` with these arguments would come to now (read only: one statement,
    no timeout policy applied, Slack never asked). Raises NotFound for no such task."""
    request = Request(
        task_id=task_id,
        actor=actor,
        outcome=outcome,
        via=via,
        reason=None,
        client=None,
        content_hash=content_hash,
        tier=tier,
    )
    async with pool.acquire() as conn:
        (context,) = await tasks.load_for_decisions(conn, [request.reader])
    if context is None:
        raise NotFound(NO_SUCH_TASK)
    judged = judge(context, request)
    if isinstance(judged, Ruling):
        return Preview(verdict=judged.verdict, task=context.task, overdue=context.task.overdue)
    return Preview(
        verdict=judged.verdict,
        task=context.task,
        decision=judged.decision,
        overdue=context.task.overdue,
    )


async def _settle(pool: asyncpg.Pool, request: Request, metrics: Metrics | None) -> DecisionResult:
    result = await Batch.submit(pool, request, metrics)
    if result is not None:
        return result
    via, outcome = request.via, request.outcome

    # The batch could not settle it (a lost race, an overdue task, an error): alone, as before.
    async def attempt(conn: asyncpg.Connection) -> DecisionResult | None:
        context = await _load_current(conn, request.reader)
        ruling = judge(context, request)
        if isinstance(ruling, DecisionResult):
            return ruling
        (recorded,) = await tasks.record_decisions(conn, [ruling.write])
        if recorded is None:
            return None  # someone else changed the task since we read it
        count(metrics, via, outcome.value)
        return ruling.result(recorded)

    return await _until_settled(pool, request.task_id, attempt)


async def cancel(
    pool: asyncpg.Pool,
    task_id: UUID,
    *,
    reason: str | None = None,
    metrics: Metrics | None = None,
) -> DecisionResult:
    """The run was cancelled on the platform: end the task `cancelled` (resolution deny)."""

    async def attempt(conn: asyncpg.Connection) -> DecisionResult | None:
        context = await _load_current(conn, tasks.Reader(task_id))
        task = context.task
        if task.status is not TaskStatus.PENDING:
            return DecisionResult(
                verdict=Verdict.ALREADY_FINISHED, task=task, decision=context.final
            )
        ruling = Ruling(
            tasks.DecisionWrite(
                task_id=task.id,
                tier=task.tier,
                version=context.version,
                action=AuditAction.CANCEL,
                via=Channel.API,
                actor=None,
                approver_id=None,
                reason=reason.strip()[:MAX_REASON] if reason else None,
                client=None,
                ending=(TaskStatus.CANCELLED.value, Resolution.DENY.value),
                event=TaskStatus.CANCELLED.value,
            ),
            Verdict.DECIDED,
            ended(task, TaskStatus.CANCELLED, Resolution.DENY),
        )
        (recorded,) = await tasks.record_decisions(conn, [ruling.write])
        if recorded is None:
            return None
        count(metrics, Channel.API, "cancel")
        return ruling.result(recorded)

    return await _until_settled(pool, task_id, attempt)


# Optimistic attempts before a decision takes the row lock; each lost race means another
# decision of the same task was written in between, so this is reached only under a storm.
_OPTIMISTIC_ATTEMPTS = 5


async def _until_settled(
    pool: asyncpg.Pool,
    task_id: UUID,
    attempt: Callable[[asyncpg.Connection], Awaitable[DecisionResult | None]],
) -> DecisionResult:
    """Read, judge, write-if-unchanged; again on a lost race. Two statements, no lock, no
    transaction in the usual case. After a few lost races, the attempt runs holding the
    task's row lock, where no other decision can slip in between, so it always settles."""
    async with pool.acquire() as conn:
        for _ in range(_OPTIMISTIC_ATTEMPTS):
            result = await attempt(conn)
            if result is not None:
                return result
        async with conn.transaction():
            await tasks.lock(conn, task_id)
            result = await attempt(conn)
        if result is None:  # pragma: no cover - the lock makes a lost race impossible
            raise RuntimeError(f"task {task_id} changed under its row lock")
        return result


async def _load_current(conn: asyncpg.Connection, reader: tasks.Reader) -> tasks.DecisionContext:
    """Read the task; if its tier has run out, apply the timeout policy first.

    The database clock decides: a click one millisecond after the deadline meets the task as
    the sweeper would leave it, whether or not a sweeper has run yet.
    """
    (context,) = await tasks.load_for_decisions(conn, [reader])
    if context is None:
        raise NotFound(NO_SUCH_TASK)
    if context.task.overdue:
        async with conn.transaction():
            await sweep.expire_due(conn, limit=1, task_id=reader.task_id)
        (context,) = await tasks.load_for_decisions(conn, [reader])
        assert context is not None
    return context
