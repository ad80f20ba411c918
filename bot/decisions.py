"""The one decision path: every channel's approve/deny, and every other end of a task.

`decide()` authorizes the person against the current tier, applies the self-approval rule and
the quorum, and records the audit row, the outcome and the outbox rows in one short
transaction. The task row is locked for that transaction, so concurrent deciders of one task
queue behind each other and exactly one outcome wins; the conditional update is the backstop.
"""

from __future__ import annotations

import enum
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
    """
    reason = reason.strip()[:MAX_REASON] or None if reason else None
    async with pool.acquire() as conn, conn.transaction():
        context = await _load_current(conn, task_id)
        task = context.task
        if task.status is not TaskStatus.PENDING:
            return DecisionResult(
                verdict=Verdict.ALREADY_FINISHED, task=task, decision=context.final
            )
        if (content_hash is not None and content_hash != task.content_hash) or (
            tier is not None and tier != task.tier
        ):
            return DecisionResult(verdict=Verdict.STALE, task=task)
        approver = _find(context.approvers, actor)
        if approver is None:
            return DecisionResult(verdict=Verdict.NOT_APPROVER, task=task)
        if outcome is Outcome.APPROVE and _is_requester(task, actor, approver):
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
            email=approver.email or actor.email,
            slack_user_id=approver.slack_user_id or actor.slack_user_id,
            slack_team_id=approver.slack_team_id or actor.slack_team_id,
        )
        decision, webhook_id = await tasks.record_decision(
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
        )
        _count(metrics, via, outcome.value)
        return DecisionResult(
            verdict=Verdict.DECIDED if ending else Verdict.COUNTED,
            task=_with(task, *ending) if ending else task,
            decision=decision,
            approvals=approvals,
            webhook_id=webhook_id,
        )


async def cancel(
    pool: asyncpg.Pool,
    task_id: UUID,
    *,
    reason: str | None = None,
    metrics: Metrics | None = None,
) -> DecisionResult:
    """The run was cancelled on the platform: end the task `cancelled` (resolution deny)."""
    async with pool.acquire() as conn, conn.transaction():
        context = await _load_current(conn, task_id)
        task = context.task
        if task.status is not TaskStatus.PENDING:
            return DecisionResult(
                verdict=Verdict.ALREADY_FINISHED, task=task, decision=context.final
            )
        decision, webhook_id = await tasks.record_decision(
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
        )
        _count(metrics, Channel.API, "cancel")
        return DecisionResult(
            verdict=Verdict.DECIDED,
            task=_with(task, TaskStatus.CANCELLED, Resolution.DENY),
            decision=decision,
            webhook_id=webhook_id,
        )


async def _load_current(conn: asyncpg.Connection, task_id: UUID) -> tasks.DecisionContext:
    """Lock the task; if its tier has run out, apply the timeout policy first.

    The database clock decides: a click one millisecond after the deadline meets the task as
    the sweeper would leave it, whether or not a sweeper has run yet.
    """
    context = await tasks.load_for_decision(conn, task_id)
    if context is None:
        raise NotFound("No such approval task.")
    if context.task.overdue:
        await sweep.expire_due(conn, limit=1, task_id=task_id)
        context = await tasks.load_for_decision(conn, task_id)
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
