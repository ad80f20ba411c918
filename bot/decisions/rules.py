"""The rules of a decision: who may decide, self-approval and the quorum, judged purely.

`judge()` is the one copy of the rules. It reads and writes nothing: it rules on one person's
request against the task as read, and `bot.decisions` writes what it rules (`decide()`) or
only reports it (`preview()`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from bot.domain import (
    Actor,
    ApprovalTask,
    Approver,
    AuditAction,
    Channel,
    Decision,
    Outcome,
    Resolution,
    TaskStatus,
)
from bot.people import Learned, Links, Person, same
from bot.runtime.metrics import Metrics
from store import tasks

__all__ = [
    "MAX_REASON",
    "NO_SUCH_TASK",
    "DecisionResult",
    "Preview",
    "Request",
    "Ruling",
    "Verdict",
    "count",
    "ended",
    "judge",
]

MAX_REASON = 2000
NO_SUCH_TASK = "No such approval task."


class Verdict(enum.StrEnum):
    """What became of one person's decision."""

    DECIDED = "decided"
    COUNTED = "counted"
    ALREADY_FINISHED = "already_finished"
    ALREADY_VOTED = "already_voted"
    NOT_APPROVER = "not_approver"
    SELF_APPROVAL = "self_approval"
    STALE = "stale"
    UNRESOLVED = "unresolved"
    """The bot cannot tell whether this person is the requester or has already voted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionResult:
    """The verdict, the task as it now stands, and the audit row that explains it."""

    verdict: Verdict
    task: ApprovalTask
    decision: Decision | None = None
    approvals: int = 0
    webhook_id: str | None = None
    ask: tuple[Actor, ...] = ()
    """People (the voter first) whom Slack could place where the bot's cache cannot; the
    verdict might differ once it has."""

    @property
    def changed(self) -> bool:
        return self.verdict in (Verdict.DECIDED, Verdict.COUNTED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One person's approve or deny, as a channel hands it over."""

    task_id: UUID
    actor: Actor
    outcome: Outcome
    via: Channel
    reason: str | None
    client: dict[str, Any] | None
    content_hash: str | None
    tier: int | None
    learned: Learned | None = None

    @property
    def reader(self) -> tasks.Reader:
        """Whose read this is: it brings what the Slack user cache knows of the actor."""
        return tasks.Reader(
            self.task_id, self.actor.slack_team_id, self.actor.slack_user_id, self.actor.email
        )


@dataclass(frozen=True, slots=True)
class Ruling:
    """A decision that holds against the task as read: written only if the task is unchanged."""

    write: tasks.DecisionWrite
    verdict: Verdict
    task: ApprovalTask
    approvals: int = 0

    def result(self, recorded: tuple[Decision, str | None]) -> DecisionResult:
        decision, webhook_id = recorded
        return DecisionResult(
            verdict=self.verdict,
            task=self.task,
            decision=decision,
            approvals=self.approvals,
            webhook_id=webhook_id,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Preview:
    """What a decision would come to now, judged by the rules `decide()` applies, without
    writing anything."""

    verdict: Verdict
    """DECIDED or COUNTED when it would be recorded; otherwise the refusal it would meet."""
    task: ApprovalTask
    decision: Decision | None = None
    """The audit row that ended the task, or the person's own earlier vote."""
    overdue: bool = False
    """The deadline has passed: the timeout policy applies before anything else (and the
    verdict is the one the task meets as it stands, before the policy)."""


def judge(context: tasks.DecisionContext, request: Request) -> DecisionResult | Ruling:
    """What `request` comes to against the task as read: a refusal, or a write to try.

    The one copy of the rules: pure (it reads and writes nothing), so `decide()` writes
    what it rules and `preview()` only reports it."""
    task = context.task
    if task.status is not TaskStatus.PENDING:
        return DecisionResult(verdict=Verdict.ALREADY_FINISHED, task=task, decision=context.final)
    if (request.content_hash is not None and request.content_hash != task.content_hash) or (
        request.tier is not None and request.tier != task.tier
    ):
        return DecisionResult(verdict=Verdict.STALE, task=task)
    actor = request.actor
    links = Links.of(
        [*context.links, *((a.email, a.slack_user_id) for a in context.approvers)]
        + [(v.actor.email, v.actor.slack_user_id) for v in context.votes if v.actor],
        request.learned,
    )
    voter = links.of_actor(actor)
    asking = request.learned is None  # Slack is asked once, between the two rounds
    ask = [actor] if asking and not voter.complete else []
    approver = next((a for a in context.approvers if _names(a, voter)), None)
    if approver is None:
        return DecisionResult(verdict=Verdict.NOT_APPROVER, task=task, ask=tuple(ask))
    voter = links.person(
        emails=[*voter.emails, approver.email],
        slack_ids=[*voter.slack_ids, approver.slack_user_id],
    )
    approving = request.outcome is Outcome.APPROVE
    requester = task.requested_by
    others: list[Actor] = []
    if approving and requester is not None and not task.allow_self_approval:
        self_vote = same(voter, links.of_actor(requester))
        if self_vote:
            return DecisionResult(verdict=Verdict.SELF_APPROVAL, task=task)
        if self_vote is None:
            others.append(requester)
    approvals = sum(1 for v in context.votes if v.action is AuditAction.APPROVE)
    for vote in context.votes:
        one = vote.approver_id == approver.id or same(voter, links.of_actor(vote.actor))
        if one:
            return DecisionResult(
                verdict=Verdict.ALREADY_VOTED, task=task, decision=vote, approvals=approvals
            )
        if one is None and vote.actor is not None:
            others.append(vote.actor)
    if others and approving:
        # Counting it could count one person twice, or let the requester approve: refuse.
        # (A deny ends the task the safe way whoever sends it, so it is not held back.)
        if asking:
            ask += [_one_name(o) for o in others]
        return DecisionResult(
            verdict=Verdict.UNRESOLVED, task=task, approvals=approvals, ask=tuple(ask)
        )
    who = (
        actor
        if actor.email or not voter.emails
        else replace(actor, email=min(voter.emails) if len(voter.emails) == 1 else None)
    )

    approvals += request.outcome is Outcome.APPROVE
    if request.outcome is Outcome.DENY:
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
    write = tasks.DecisionWrite(
        task_id=task.id,
        tier=task.tier,
        version=context.version,
        action=AuditAction(request.outcome.value),
        via=request.via,
        actor=person,
        approver_id=approver.id,
        reason=request.reason,
        client=request.client,
        ending=(ending[0].value, ending[1].value) if ending else None,
        event=ending[0].value if ending else "vote",
    )
    return Ruling(
        write,
        Verdict.DECIDED if ending else Verdict.COUNTED,
        ended(task, *ending) if ending else task,
        approvals,
    )


def _one_name(actor: Actor) -> Actor:
    """The name of a person Slack is best asked about: their Slack user, else their email."""
    if actor.slack_user_id:
        return Actor(slack_user_id=actor.slack_user_id, slack_team_id=actor.slack_team_id)
    return Actor(email=actor.email)


def _names(approver: Approver, person: Person) -> bool:
    """Whether the approver row names this person (by either of its names)."""
    email = approver.email.lower() if approver.email else None
    return email in person.emails or approver.slack_user_id in person.slack_ids


def ended(task: ApprovalTask, status: TaskStatus, resolution: Resolution) -> ApprovalTask:
    return replace(task, status=status, resolution=resolution)


def count(metrics: Metrics | None, via: Channel, action: str) -> None:
    if metrics is not None:
        metrics.decisions.labels(via.value, action).inc()
