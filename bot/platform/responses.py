"""The component schemas of what /api/v1 answers: tasks, pages, events, workspaces, errors.

What it accepts is in `bot.platform.schemas`; the OpenAPI document lists both.
"""

from __future__ import annotations

from typing import Any

from bot.domain import (
    AuditAction,
    Channel,
    Reversibility,
    TaskStatus,
    TimeoutPolicy,
)

__all__ = ["RESPONSE_SCHEMAS"]

# The enums as the document lists them: the values, in the order the domain declares them.
_TASK_STATUSES = [s.value for s in TaskStatus]
# The audit actions as the document has always listed them (votes first, then endings).
_ACTIONS = [
    a.value
    for a in (
        AuditAction.APPROVE,
        AuditAction.DENY,
        AuditAction.EXPIRE,
        AuditAction.PROCEED,
        AuditAction.ESCALATE,
        AuditAction.CANCEL,
    )
]


_NULLABLE_STR = {"type": ["string", "null"]}
_PERSON_OUT = {
    "type": "object",
    "properties": {
        "email": {"type": "string"},
        "slack_user_id": {"type": "string"},
        "slack_team_id": {"type": "string"},
    },
}

RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error", "fields"],
        "properties": {
            "error": {"type": "string"},
            "fields": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "each bad field (dotted path) and what is wrong with it",
            },
        },
    },
    "Task": {
        "type": "object",
        "required": [
            "id",
            "workspace",
            "run_id",
            "status",
            "resolution",
            "expires_at",
            "decisions",
            "deliveries",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "workspace": {"type": "string"},
            "run_id": {"type": "string"},
            "workflow": {"type": "object"},
            "step": _NULLABLE_STR,
            "summary": {"type": "string"},
            "details": {"type": "object"},
            "reversibility": {"enum": [r.value for r in Reversibility]},
            "approvers": {"type": "array", "items": _PERSON_OUT},
            "required_approvals": {"type": "integer"},
            "requested_by": {"oneOf": [_PERSON_OUT, {"type": "null"}]},
            "allow_self_approval": {"type": "boolean"},
            "timeout_policy": {"enum": [p.value for p in TimeoutPolicy]},
            "escalation": {"type": "array", "items": {"type": "object"}},
            "remind_before": {"type": ["integer", "null"]},
            "deliver": {"type": "object"},
            "status": {"enum": _TASK_STATUSES},
            "resolution": {"enum": ["proceed", "deny", None]},
            "tier": {
                "type": "integer",
                "description": "0 for the first approvers, n for escalation[n-1]",
            },
            "expires_at": {
                "type": "string",
                "format": "date-time",
                "description": "expiry of the current tier",
            },
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "decisions": {
                "type": "array",
                "description": "the audit trail: every vote and transition",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "tier": {"type": "integer"},
                        "action": {"enum": _ACTIONS},
                        "via": {"enum": [c.value for c in Channel]},
                        "by": {"oneOf": [_PERSON_OUT, {"type": "null"}]},
                        "reason": _NULLABLE_STR,
                        "client": {"type": "object"},
                        "at": {"type": "string", "format": "date-time"},
                    },
                },
            },
            "deliveries": {"type": "array", "items": {"type": "object"}},
            "reach": {
                "type": "array",
                "description": "per approver of the current tier: reached, via, at, channels",
                "items": {"type": "object"},
            },
        },
    },
    "TaskPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {
                "type": "array",
                "items": {"type": "object"},
                "description": "tasks as in Task, without decisions and deliveries",
            },
            "next_cursor": _NULLABLE_STR,
        },
    },
    "EventAccepted": {
        "type": "object",
        "required": ["event_id", "notified", "alerts"],
        "properties": {
            "event_id": {"type": "integer"},
            "notified": {
                "type": "boolean",
                "description": "false when the event repeats what is already known",
            },
            "alerts": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Workspace": {
        "type": "object",
        "required": ["workspace", "slack_channel", "alert_emails", "thresholds"],
        "properties": {
            "workspace": {"type": "string"},
            "slack_channel": _NULLABLE_STR,
            "slack_team_id": _NULLABLE_STR,
            "alert_emails": {"type": "array", "items": {"type": "string"}},
            "thresholds": {"type": "array", "items": {"type": "number"}},
            "slack": {
                "oneOf": [{"$ref": "#/components/schemas/SlackBinding"}, {"type": "null"}],
                "description": "GET only: the Slack team bound in distributed mode, or null",
            },
        },
    },
    "SlackBinding": {
        "type": "object",
        "required": [
            "team_id",
            "team_name",
            "enterprise_id",
            "installed_by",
            "installed_at",
            "status",
        ],
        "properties": {
            "team_id": {"type": "string"},
            "team_name": _NULLABLE_STR,
            "enterprise_id": _NULLABLE_STR,
            "installed_by": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["slack_user_id", "email"],
                        "properties": {
                            "slack_user_id": {"type": "string"},
                            "email": _NULLABLE_STR,
                        },
                    },
                    {"type": "null"},
                ]
            },
            "installed_at": {"type": "string", "format": "date-time"},
            "status": {"enum": ["active", "revoked"]},
        },
    },
    "InstallLink": {
        "type": "object",
        "required": ["url", "expires_at"],
        "properties": {
            "url": {
                "type": "string",
                "format": "uri",
                "description": "single use: shown to the workspace admin as Add to Slack",
            },
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
    "OutboxPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"type": "object"}},
            "next_cursor": _NULLABLE_STR,
        },
    },
}
