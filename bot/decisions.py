"""The one decision path: every channel's approve/deny, and every other end of a task.

`decide()` authorizes the person against the current tier, applies the self-approval rule and
the quorum, and records the audit row, the outcome and the outbox rows in one statement. It
reads the task in one statement and writes only if the task's version is unchanged, so of
concurrent deciders of one task exactly one write wins each round and the others look again
at what it did: a later vote counts towards the same quorum, a click after the end is told
who ended it. No lock is held between the two statements.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import asyncpg

from bot.domain import (
    Actor,
    ApprovalTask,
    Approver,
    Channel,
    Decision,
    Outcome,
    Resolution,
    TaskStatus,
)
from bot.errors import NotFound
from bot.metrics import Metrics
from store import sweep, tasks

__all__ = ["DecisionResult", "Verdict", "cancel", "decide"]

MAX_REASON = 2000


class Verdict(enum.StrEnum):
    """What became of one person's decision."""

    DECIDED = "decided"
    COUNTED = "counted"
    ALREADY_FINISHED = "already_finished"
    ALREADY_VOTED = "already_voted"
    NOT_APPROVER = "not_approver"
    SELF_APPROVAL = "self_approval"
    STALE = "stale"


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionResult:
    """The verdict, the task as it now stands, and the audit row that explains it."""

    verdict: Verdict
    task: ApprovalTask
    decision: Decision | None = None
    approvals: int = 0
    webhook_id: str | None = None

    @property
    def changed(self) -> bool:
        return self.verdict in (Verdict.DECIDED, Verdict.COUNTED)


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
    An actor known only by Slack ids is matched by the email the bot has on file for them.
    """
    reason = reason.strip()[:MAX_REASON] or None if reason else None

    async def attempt(conn: asyncpg.Connection) -> DecisionResult | None:
        context = await _load_current(conn, task_id, actor)
        task = context.task
        if task.status is not TaskStatus.PENDING:
            return DecisionResult(
                verdict=Verdict.ALREADY_FINISHED, task=task, decision=context.final
            )
        if (content_hash is not None and content_hash != task.content_hash) or (
            tier is not None and tier != task.tier
        ):
            return DecisionResult(verdict=Verdict.STALE, task=task)
        who = (
            actor
            if actor.email or not context.slack_email
            else replace(actor, email=context.slack_email)
        )
        approver = _find(context.approvers, who)
        if approver is None:
            return DecisionResult(verdict=Verdict.NOT_APPROVER, task=task)
        if outcome is Outcome.APPROVE and _is_requester(task, who, approver):
            return DecisionResult(verdict=Verdict.SELF_APPROVAL, task=task)
        earlier = next((v for v in context.votes if v.approver_id == approver.id), None)
        approvals = sum(1 for v in context.votes if v.action == "approve")
        if earlier is not None:
            return DecisionResult(
                verdict=Verdict.ALREADY_VOTED, task=task, decision=earlier, approvals=approvals
            )

        approvals += outcome is Outcome.APPROVE
        if outcome is Outcome.DENY:
            ending: tuple[TaskStatus, Resolution] | None = (TaskStatus.DENIED, Resolution.DENY)
        elif approvals >= task.required_approvals:
            ending = (TaskStatus.APPROVED, Resolution.PROCEED)
        else:
            ending = None
        person = Actor(
            email=approver.email or who.email,
            slack_user_id=approver.slack_user_id or who.slack_user_id,
            slack_team_id=approver.slack_team_id or who.slack_team_id,
        )
        recorded = await tasks.record_decision(
            conn,
            task=task,
            action=outcome.value,
            via=via,
            actor=person,
            approver_id=approver.id,
            reason=reason,
            client=client,
            ending=(ending[0].value, ending[1].value) if ending else None,
            event=ending[0].value if ending else "vote",
            version=context.version,
        )
        if recorded is None:
            return None  # someone else changed the task since we read it
        decision, webhook_id = recorded
        _count(metrics, via, outcome.value)
        return DecisionResult(
            verdict=Verdict.DECIDED if ending else Verdict.COUNTED,
            task=_with(task, *ending) if ending else task,
            decision=decision,
            approvals=approvals,
            webhook_id=webhook_id,
        )

    return await _until_settled(pool, task_id, attempt)


async def cancel(
    pool: asyncpg.Pool,
    task_id: UUID,
    *,
    reason: str | None = None,
    metrics: Metrics | None = None,
) -> DecisionResult:
    """The run was cancelled on the platform: end the task `cancelled` (resolution deny)."""

    async def attempt(conn: asyncpg.Connection) -> DecisionResult | None:
        context = await _load_current(conn, task_id, None)
        task = context.task
        if task.status is not TaskStatus.PENDING:
            return DecisionResult(
                verdict=Verdict.ALREADY_FINISHED, task=task, decision=context.final
            )
        recorded = await tasks.record_decision(
            conn,
            task=task,
            action="cancel",
            via=Channel.API,
            actor=None,
            approver_id=None,
            reason=reason.strip()[:MAX_REASON] if reason else None,
            client=None,
            ending=(TaskStatus.CANCELLED.value, Resolution.DENY.value),
            event=TaskStatus.CANCELLED.value,
            version=context.version,
        )
        if recorded is None:
            return None
        decision, webhook_id = recorded
        _count(metrics, Channel.API, "cancel")
        return DecisionResult(
            verdict=Verdict.DECIDED,
            task=_with(task, TaskStatus.CANCELLED, Resolution.DENY),
            decision=decision,
            webhook_id=webhook_id,
        )

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


async def _load_current(
    conn: asyncpg.Connection, task_id: UUID, actor: Actor | None
) -> tasks.DecisionContext:
    """Read the task; if its tier has run out, apply the timeout policy first.

    The database clock decides: a click one millisecond after the deadline meets the task as
    the sweeper would leave it, whether or not a sweeper has run yet.
    """
    slack = (
        {"slack_team_id": actor.slack_team_id, "slack_user_id": actor.slack_user_id}
        if actor is not None and actor.email is None and actor.slack_user_id
        else {}
    )
    context = await tasks.load_for_decision(conn, task_id, **slack)
    if context is None:
        raise NotFound("No such approval task.")
    if context.task.overdue:
        async with conn.transaction():
            await sweep.expire_due(conn, limit=1, task_id=task_id)
        context = await tasks.load_for_decision(conn, task_id, **slack)
        assert context is not None
    return context


def _find(approvers: list[Approver], actor: Actor) -> Approver | None:
    return next((a for a in approvers if a.matches(actor)), None)


def _is_requester(task: ApprovalTask, actor: Actor, approver: Approver) -> bool:
    requester = task.requested_by
    if requester is None or task.allow_self_approval:
        return False
    person = Actor(
        email=approver.email or actor.email,
        slack_user_id=approver.slack_user_id or actor.slack_user_id,
    )
    return Approver(
        id=0,
        tier=0,
        email=requester.email,
        slack_user_id=requester.slack_user_id,
        slack_team_id=None,
    ).matches(person)


def _with(task: ApprovalTask, status: TaskStatus, resolution: Resolution) -> ApprovalTask:
    return replace(task, status=status, resolution=resolution)


def _count(metrics: Metrics | None, via: Channel, action: str) -> None:
    if metrics is not None:
        metrics.decisions.labels(via.value, action).inc()
