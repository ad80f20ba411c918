"""JSON Schemas (2020-12) of the platform API bodies: one source for validation and OpenAPI."""

from __future__ import annotations

from typing import Any

__all__ = [
    "MAX_COUNT",
    "MAX_EXPIRY_SECONDS",
    "SCHEMAS",
    "WORKSPACE_PATTERN",
]

# A bound on counts and rates (runs, runs per minute): far above any real one, and small
# enough that every renderer formats it exactly.
MAX_COUNT = 10**12

# Thirty days: a request nobody may answer for longer than that is a mistake, not a policy.
MAX_EXPIRY_SECONDS = 30 * 24 * 3600


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema, also accepting null (keywords for other types do not apply to null)."""
    kind = schema["type"]
    return schema | {"type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


_ID = {"type": "string", "minLength": 1, "maxLength": 200}
WORKSPACE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
_SLUG = {
    "type": "string",
    "pattern": WORKSPACE_PATTERN,
    "description": "URL-safe workspace slug, as in the TaskJuice app's URLs",
}
# An address any SMTP server takes without SMTPUTF8: an ASCII dot-atom local part (RFC 5322
# atext) and an ASCII domain, so an internationalised domain comes in its IDNA (xn--) form.
_EMAIL = {
    "type": "string",
    "maxLength": 254,
    "pattern": r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$",
    "description": "ASCII only: an internationalised domain in its IDNA (xn--) form",
}
_SLACK_USER = {"type": "string", "pattern": "^[UW][A-Z0-9]{2,20}$"}
_SLACK_TEAM = {"type": "string", "pattern": "^[TE][A-Z0-9]{2,20}$"}
_SLACK_CHANNEL = {"type": "string", "pattern": "^[CGD][A-Z0-9]{2,20}$"}
_EXPIRES_IN = {"type": "integer", "minimum": 1, "maximum": MAX_EXPIRY_SECONDS}

_PERSON = {
    "type": "object",
    "properties": {
        "email": _EMAIL,
        "slack_user_id": _SLACK_USER,
        "slack_team_id": _SLACK_TEAM,
    },
    "anyOf": [{"required": ["email"]}, {"required": ["slack_user_id"]}],
    "additionalProperties": False,
}
_APPROVERS = {"type": "array", "minItems": 1, "maxItems": 50, "items": _PERSON}

APPROVAL_CREATE: dict[str, Any] = {
    "type": "object",
    "required": ["workspace", "run_id", "workflow", "summary", "reversibility", "approvers"],
    "properties": {
        "workspace": _SLUG,
        "run_id": _ID,
        "workflow": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {"id": _ID, "name": {"type": "string", "minLength": 1, "maxLength": 500}},
        },
        "step": {"type": ["string", "null"], "maxLength": 500},
        "summary": {"type": "string", "minLength": 1, "maxLength": 1000},
        "details": {
            "type": "object",
            "maxProperties": 50,
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        },
        "reversibility": {"enum": ["safe", "recoverable", "irreversible"]},
        "approvers": _APPROVERS,
        "required_approvals": {"type": "integer", "minimum": 1, "maximum": 50, "default": 1},
        "requested_by": _nullable(_PERSON),
        "allow_self_approval": {"type": "boolean", "default": False},
        "expires_in": _EXPIRES_IN,
        "expires_at": {"type": "string", "format": "date-time"},
        "timeout_policy": {"enum": ["deny", "proceed", "escalate"], "default": "deny"},
        "escalation": {
            "type": "array",
            "maxItems": 10,
            "items": {
                "type": "object",
                "required": ["approvers", "expires_in"],
                "properties": {"approvers": _APPROVERS, "expires_in": _EXPIRES_IN},
                "additionalProperties": False,
            },
        },
        "remind_before": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": MAX_EXPIRY_SECONDS,
            "description": "seconds before expiry to remind the current tier; null for none",
        },
        "deliver": {
            "type": "object",
            "properties": {
                "slack": {"type": "boolean", "default": True},
                "email": {"type": "boolean", "default": True},
                "slack_channel": _nullable(_SLACK_CHANNEL),
                "fallback": {
                    "type": "boolean",
                    "default": True,
                    "description": "use a channel turned off here when the other one fails",
                },
            },
            "additionalProperties": False,
        },
    },
}

CANCEL: dict[str, Any] = {
    "type": "object",
    "properties": {"reason": {"type": ["string", "null"], "maxLength": 2000}},
}

_MONEY = {"type": "number", "minimum": 0, "maximum": 1e15}

SPEND_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["workspace", "spend", "cap", "currency", "period", "stage"],
    "properties": {
        "workspace": _SLUG,
        "spend": _MONEY,
        "cap": {"type": "number", "minimum": 0.01, "maximum": 1e15},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "period": {"type": "string", "minLength": 1, "maxLength": 100},
        "stage": {"enum": ["soft", "hard", "cleared"]},
        "workflow": _nullable(
            {
                "type": "object",
                "required": ["id"],
                "properties": {"id": _ID, "name": {"type": "string", "maxLength": 500}},
            }
        ),
    },
}

CONNECTION_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["workspace", "connection", "state"],
    "properties": {
        "workspace": _SLUG,
        "connection": {
            "type": "object",
            "required": ["id", "app", "name"],
            "properties": {
                "id": _ID,
                "app": {"type": "string", "minLength": 1, "maxLength": 200},
                "name": {"type": "string", "minLength": 1, "maxLength": 500},
            },
        },
        "state": {"enum": ["error", "active"]},
        "paused_runs": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_COUNT},
    },
}

THROUGHPUT_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["workspace", "workflow", "state"],
    "properties": {
        "workspace": _SLUG,
        "workflow": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {"id": _ID, "name": {"type": "string", "minLength": 1, "maxLength": 500}},
        },
        "rate": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_COUNT},
        "cap": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_COUNT},
        "state": {"enum": ["tripped", "cleared"]},
    },
}

WORKSPACE_ROUTING: dict[str, Any] = {
    "type": "object",
    "properties": {
        "slack_channel": _nullable(_SLACK_CHANNEL),
        "slack_team_id": _nullable(_SLACK_TEAM),
        "alert_emails": {"type": "array", "maxItems": 50, "items": _EMAIL},
        "thresholds": {
            "type": "array",
            "maxItems": 10,
            "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
            "description": "soft spend-cap thresholds as percentages of the cap",
        },
    },
    "additionalProperties": False,
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "ApprovalCreate": APPROVAL_CREATE,
    "Cancel": CANCEL,
    "SpendEvent": SPEND_EVENT,
    "ConnectionEvent": CONNECTION_EVENT,
    "ThroughputEvent": THROUGHPUT_EVENT,
    "WorkspaceRouting": WORKSPACE_ROUTING,
}
