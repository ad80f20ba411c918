"""The task as the API shows it and every renderer reads it: one typed record.

`store.tasks` reads a task with its tiers, audit rows and deliveries into the mapping the API
has always answered with, and builds a `TaskView` from it once (`TaskView.from_row`). Slack
blocks, App Home, mail, magic-link pages and the wording read the record's attributes;
`as_json()` gives the API's JSON back exactly (the same fields, values and order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from bot.domain import (
    Actor,
    AuditAction,
    Channel,
    DeliveryStatus,
    Resolution,
    Reversibility,
    TaskStatus,
    TimeoutPolicy,
)

__all__ = ["AuditEntry", "DeliveryEntry", "EscalationTier", "TaskView"]

# JSON objects are written in these orders; an absent (or empty) name is left out.
_PERSON_KEYS = ("email", "slack_user_id", "slack_team_id")
# `requested_by` is stored as jsonb, which keeps its keys shortest first.
_REQUESTER_KEYS = ("email", "slack_team_id", "slack_user_id")
_DELIVERY_KEYS = (
    "channel",
    "purpose",
    "tier",
    "status",
    "last_error",
    "slack_team_id",
    "slack_channel",
    "slack_ts",
    "mail_to",
    "mail_message_id",
)


def _time(value: str | datetime) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _actor(value: Mapping[str, Any]) -> Actor:
    return Actor(
        email=value.get("email"),
        slack_user_id=value.get("slack_user_id"),
        slack_team_id=value.get("slack_team_id"),
    )


def _names(actor: Actor, keys: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k in keys if (v := getattr(actor, k))}


def _people(values: list[Mapping[str, Any]]) -> tuple[Actor, ...]:
    return tuple(_actor(v) for v in values)


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationTier:
    """A tier after the first: who may decide, and for how long once it is reached."""

    approvers: tuple[Actor, ...]
    expires_in: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "approvers": [_names(a, _PERSON_KEYS) for a in self.approvers],
            "expires_in": self.expires_in,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One audit row as the view shows it: what was done at which tier, by whom, via what."""

    id: int
    tier: int
    action: AuditAction
    via: Channel
    by: Actor | None
    reason: str | None
    client: dict[str, Any] | None
    at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AuditEntry:
        return cls(
            id=row["id"],
            tier=row["tier"],
            action=AuditAction(row["action"]),
            via=Channel(row["via"]),
            by=_actor(row["by"]) if row["by"] is not None else None,
            reason=row["reason"],
            client=row["client"],
            at=_time(row["at"]),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tier": self.tier,
            "action": self.action.value,
            "via": self.via.value,
            "by": _names(self.by, _PERSON_KEYS) or None if self.by else None,
            "reason": self.reason,
            "client": self.client,
            "at": _iso(self.at),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryEntry:
    """One message to an approver or a channel: where it went and how it stands."""

    channel: str
    purpose: str
    tier: int
    status: DeliveryStatus
    last_error: str | None = None
    slack_team_id: str | None = None
    slack_channel: str | None = None
    slack_ts: str | None = None
    mail_to: str | None = None
    mail_message_id: str | None = None
    at: datetime
    sent_at: datetime | None = None  # when the channel accepted it (Slack post, SMTP)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DeliveryEntry:
        return cls(
            channel=row["channel"],
            purpose=row["purpose"],
            tier=row["tier"],
            status=DeliveryStatus(row["status"]),
            last_error=row.get("last_error"),
            slack_team_id=row.get("slack_team_id"),
            slack_channel=row.get("slack_channel"),
            slack_ts=row.get("slack_ts"),
            mail_to=row.get("mail_to"),
            mail_message_id=row.get("mail_message_id"),
            at=_time(row["at"]),
            sent_at=_time(row["sent_at"]) if row.get("sent_at") is not None else None,
        )

    def as_json(self) -> dict[str, Any]:
        shown = {k: getattr(self, k) for k in _DELIVERY_KEYS}
        shown["status"] = self.status.value
        shown = {k: v for k, v in shown.items() if v is not None} | {"at": _iso(self.at)}
        if self.sent_at is not None:
            shown["sent_at"] = _iso(self.sent_at)
        return shown


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskView:
    """An approval task with its tiers, audit trail and deliveries, as shown to people.

    `decisions` and `deliveries` are None in a listing, which leaves them out. The platform's
    own payloads (`workflow`, `details`, `deliver`, an audit row's `client`) stay mappings.
    """

    id: UUID
    workspace: str
    run_id: str
    workflow: dict[str, Any]
    step: str | None
    summary: str
    details: dict[str, Any]
    reversibility: Reversibility
    approvers: tuple[Actor, ...]
    required_approvals: int
    requested_by: Actor | None
    allow_self_approval: bool
    timeout_policy: TimeoutPolicy
    escalation: tuple[EscalationTier, ...]
    remind_before: int | None
    deliver: dict[str, Any]
    status: TaskStatus
    resolution: Resolution | None
    tier: int
    expires_at: datetime
    created_at: datetime
    finished_at: datetime | None
    decisions: tuple[AuditEntry, ...] | None = None
    deliveries: tuple[DeliveryEntry, ...] | None = None
    # Per approver of the current tier: whether and by which channel the request reached
    # them, each channel's state (contract §8); shown as read, None in a listing.
    reach: tuple[dict[str, Any], ...] | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskView:
        """The record of the mapping `store.tasks` reads (the API's JSON shape)."""
        requested = row["requested_by"]
        decisions = row.get("decisions")
        deliveries = row.get("deliveries")
        return cls(
            id=UUID(str(row["id"])),
            workspace=row["workspace"],
            run_id=row["run_id"],
            workflow=row["workflow"],
            step=row["step"],
            summary=row["summary"],
            details=row["details"],
            reversibility=Reversibility(row["reversibility"]),
            approvers=_people(row["approvers"]),
            required_approvals=row["required_approvals"],
            requested_by=_actor(requested) if requested is not None else None,
            allow_self_approval=row["allow_self_approval"],
            timeout_policy=TimeoutPolicy(row["timeout_policy"]),
            escalation=tuple(
                EscalationTier(approvers=_people(t["approvers"]), expires_in=t["expires_in"])
                for t in row["escalation"]
            ),
            remind_before=row["remind_before"],
            deliver=row["deliver"],
            status=TaskStatus(row["status"]),
            resolution=Resolution(row["resolution"]) if row["resolution"] is not None else None,
            tier=row["tier"],
            expires_at=_time(row["expires_at"]),
            created_at=_time(row["created_at"]),
            finished_at=_time(row["finished_at"]) if row["finished_at"] is not None else None,
            decisions=(
                tuple(AuditEntry.from_row(d) for d in decisions) if decisions is not None else None
            ),
            deliveries=(
                tuple(DeliveryEntry.from_row(d) for d in deliveries)
                if deliveries is not None
                else None
            ),
            reach=tuple(row["reach"]) if row.get("reach") is not None else None,
        )

    def as_json(self) -> dict[str, Any]:
        """The API's JSON of this task: `GET /api/v1/approvals/{id}`, or a listing's item."""
        shown: dict[str, Any] = {
            "id": str(self.id),
            "workspace": self.workspace,
            "run_id": self.run_id,
            "workflow": self.workflow,
            "step": self.step,
            "summary": self.summary,
            "details": self.details,
            "reversibility": self.reversibility.value,
            "approvers": [_names(a, _PERSON_KEYS) for a in self.approvers],
            "required_approvals": self.required_approvals,
            "requested_by": (
                _names(self.requested_by, _REQUESTER_KEYS) if self.requested_by else None
            ),
            "allow_self_approval": self.allow_self_approval,
            "timeout_policy": self.timeout_policy.value,
            "escalation": [t.as_json() for t in self.escalation],
            "remind_before": self.remind_before,
            "deliver": self.deliver,
            "status": self.status.value,
            "resolution": self.resolution.value if self.resolution else None,
            "tier": self.tier,
            "expires_at": _iso(self.expires_at),
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
        }
        if self.decisions is not None:
            shown["decisions"] = [d.as_json() for d in self.decisions]
        if self.deliveries is not None:
            shown["deliveries"] = [d.as_json() for d in self.deliveries]
        if self.reach is not None:
            shown["reach"] = list(self.reach)
        return shown

    def tier_approvers(self, tier: int) -> tuple[Actor, ...]:
        """Who may decide at `tier` (nobody for a tier the task does not have)."""
        if tier == 0:
            return self.approvers
        return self.escalation[tier - 1].approvers if 0 < tier <= len(self.escalation) else ()

    def approvals_at(self, tier: int) -> list[Actor | None]:
        """Who approved at `tier`, in order."""
        return [
            d.by for d in self.decisions or () if d.action is AuditAction.APPROVE and d.tier == tier
        ]

    def with_slack_users(self, users: Mapping[str, str]) -> TaskView:
        """The view with each decider known only by email shown as the Slack user `users`
        names for that email (as given, e.g. by the bot's Slack user cache)."""

        def known(entry: AuditEntry) -> AuditEntry:
            who = entry.by
            if who is None or who.slack_user_id or not who.email or who.email not in users:
                return entry
            return replace(entry, by=replace(who, slack_user_id=users[who.email]))

        if self.decisions is None:
            return self
        return replace(self, decisions=tuple(known(d) for d in self.decisions))
