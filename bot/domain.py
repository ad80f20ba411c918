"""Domain vocabulary: statuses, policies and the records every layer passes around."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

__all__ = [
    "Actor",
    "AlertKind",
    "AlertState",
    "ApprovalTask",
    "Approver",
    "AuditAction",
    "Channel",
    "ConnectionState",
    "Decision",
    "DeliveryStatus",
    "NewApproval",
    "NewTier",
    "OutboxKind",
    "OutboxStatus",
    "Outcome",
    "Resolution",
    "Reversibility",
    "SpendStage",
    "TaskStatus",
    "ThroughputState",
    "TimeoutPolicy",
]


class TaskStatus(enum.StrEnum):
    """Where an approval task stands; only PENDING moves."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Resolution(enum.StrEnum):
    """What the platform must do with the gated action."""

    PROCEED = "proceed"
    DENY = "deny"


class TimeoutPolicy(enum.StrEnum):
    """What happens when nobody answers before the current tier expires."""

    DENY = "deny"
    PROCEED = "proceed"
    ESCALATE = "escalate"


class Reversibility(enum.StrEnum):
    """How bad it is to get the gated action wrong."""

    SAFE = "safe"
    RECOVERABLE = "recoverable"
    IRREVERSIBLE = "irreversible"


class Outcome(enum.StrEnum):
    """What a person asks for."""

    APPROVE = "approve"
    DENY = "deny"


class Channel(enum.StrEnum):
    """Where a decision or transition came from (the audit trail's `via`)."""

    SLACK = "slack"
    EMAIL_LINK = "email_link"
    EMAIL_REPLY = "email_reply"
    TIMEOUT = "timeout"
    API = "api"


class AuditAction(enum.StrEnum):
    """What an audit row records: a person's vote, or what ended or moved the task."""

    APPROVE = "approve"
    DENY = "deny"
    CANCEL = "cancel"
    EXPIRE = "expire"
    """The timeout policy denied it."""
    PROCEED = "proceed"
    """The timeout policy let it proceed."""
    ESCALATE = "escalate"


class DeliveryStatus(enum.StrEnum):
    """Where one message to an approver or a channel stands."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class OutboxStatus(enum.StrEnum):
    """Where one outbox item stands."""

    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


class OutboxKind(enum.StrEnum):
    """The outbox items a task or alert change writes (see `bot.outbox.consequences`); the
    statements in `store/` that write them take these values as parameters."""

    CALLBACK = "callback"
    TASK_CHANGED = "task.changed"
    ALERT_CHANGED = "alert.changed"


class SpendStage(enum.StrEnum):
    """A spend event's stage (`POST /api/v1/events/spend`)."""

    SOFT = "soft"
    HARD = "hard"
    CLEARED = "cleared"


class ConnectionState(enum.StrEnum):
    """A connection event's state (`POST /api/v1/events/connection`)."""

    ERROR = "error"
    ACTIVE = "active"


class ThroughputState(enum.StrEnum):
    """A throughput breaker event's state (`POST /api/v1/events/throughput`)."""

    TRIPPED = "tripped"
    CLEARED = "cleared"


class AlertKind(enum.StrEnum):
    """What an alert subject is about (`alert_state.kind`)."""

    SPEND_SOFT = "spend.soft"
    SPEND_HARD = "spend.hard"
    CONNECTION = "connection"
    CONNECTION_SUMMARY = "connection.summary"
    THROUGHPUT = "throughput"


class AlertState(enum.StrEnum):
    """Where an alert subject stands (`alert_state.state`); a connection and a throughput
    breaker take their event's state (`ConnectionState`, `ThroughputState`)."""

    ANNOUNCED = "announced"
    """A soft spend threshold, the highest crossed: announced once."""
    PASSED = "passed"
    """A soft spend threshold below the highest crossed: never announced."""
    REACHED = "reached"
    CLEARED = "cleared"
    ERROR = "error"
    ACTIVE = "active"
    OPEN = "open"
    """The connection summary: some connections need reauthorization."""
    RESOLVED = "resolved"
    TRIPPED = "tripped"
    RESUME_REQUESTED = "resume_requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """A person acting: identified by email, by Slack user, or both."""

    email: str | None = None
    slack_user_id: str | None = None
    slack_team_id: str | None = None

    def as_json(self) -> dict[str, str | None]:
        return {"email": self.email, "slack_user_id": self.slack_user_id}


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTier:
    """One tier of a create request: who may decide and for how long."""

    approvers: tuple[Actor, ...]
    expires_in: int | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewApproval:
    """A validated create-approval request."""

    workspace: str
    run_id: str
    workflow: dict[str, Any]
    step: str | None
    summary: str
    details: dict[str, Any]
    reversibility: Reversibility
    tiers: tuple[NewTier, ...]
    required_approvals: int
    requested_by: Actor | None
    allow_self_approval: bool
    timeout_policy: TimeoutPolicy
    remind_before: int | None
    remind_default: bool
    deliver: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Approver:
    """An approver row of a task's tier."""

    id: int
    tier: int
    email: str | None
    slack_user_id: str | None
    slack_team_id: str | None

    def matches(self, actor: Actor) -> bool:
        if self.email and actor.email and self.email.lower() == actor.email.lower():
            return True
        return bool(self.slack_user_id and self.slack_user_id == actor.slack_user_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalTask:
    """An approval task as stored."""

    id: UUID
    workspace: str
    run_id: str
    summary: str
    reversibility: Reversibility
    status: TaskStatus
    resolution: Resolution | None
    timeout_policy: TimeoutPolicy
    required_approvals: int
    allow_self_approval: bool
    requested_by: Actor | None
    tier: int
    tier_count: int
    expires_at: datetime
    content_hash: str
    overdue: bool = False
    """The database clock says the current tier has expired (the sweeper may not know yet)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One audit row: who did what to a task, via which channel, when."""

    id: int
    task_id: UUID
    tier: int
    action: AuditAction
    via: Channel
    actor: Actor | None
    reason: str | None
    decided_at: datetime
    approver_id: int | None = None
