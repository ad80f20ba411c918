"""The OpenAPI 3.1 document of /api/v1, built from the same schemas that validate requests."""

from __future__ import annotations

from functools import cache
from typing import Any

from bot.domain import (
    AuditAction,
    Channel,
    OutboxStatus,
    Reversibility,
    TaskStatus,
    TimeoutPolicy,
)
from bot.platform.schemas import SCHEMAS, WORKSPACE_PATTERN

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

__all__ = ["openapi_document"]

_NULLABLE_STR = {"type": ["string", "null"]}
_PERSON_OUT = {
    "type": "object",
    "properties": {
        "email": {"type": "string"},
        "slack_user_id": {"type": "string"},
        "slack_team_id": {"type": "string"},
    },
}

_RESPONSES: dict[str, dict[str, Any]] = {
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


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request",
        401: "Missing or wrong bearer token",
        404: "Not found",
        409: "Conflicts with the current state",
        413: "Body too large",
        422: "Invalid fields, each named",
        503: "Database unavailable; retry",
    }
    return {str(c): _json("Error", text[c]) for c in (401, 503, *codes)}


def _body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


_TASK_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
}
_CURSOR = {"name": "cursor", "in": "query", "schema": {"type": "string"}}
_WORKSPACE = {
    "name": "workspace",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": WORKSPACE_PATTERN},
}


def _event(summary: str, schema: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": _body(schema),
            "responses": {
                "202": _json("EventAccepted", "Stored; deduplicated"),
                **_errors(413, 422),
            },
        }
    }


@cache
def _paths() -> dict[str, Any]:
    return {
        "/approvals": {
            "post": {
                "summary": "Create an approval task",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
                "requestBody": _body("ApprovalCreate"),
                "responses": {
                    "201": _json("Task", "Created (or replayed for a repeated key)"),
                    **_errors(409, 413, 422),
                },
            },
            "get": {
                "summary": "List approval tasks, newest first",
                "parameters": [
                    {"name": "workspace", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": _TASK_STATUSES},
                    },
                    _LIMIT,
                    _CURSOR,
                ],
                "responses": {"200": _json("TaskPage", "A page of tasks"), **_errors(422)},
            },
        },
        "/approvals/{id}": {
            "get": {
                "summary": "A task with its approvers, audit trail and deliveries",
                "parameters": [_TASK_ID],
                "responses": {"200": _json("Task", "The task"), **_errors(404)},
            }
        },
        "/approvals/{id}/cancel": {
            "post": {
                "summary": "The run was cancelled: end the task and update its messages",
                "parameters": [_TASK_ID],
                "requestBody": _body("Cancel", required=False),
                "responses": {
                    "200": _json("Task", "Cancelled (or already cancelled)"),
                    **_errors(404, 409, 413, 422),
                },
            }
        },
        "/events/spend": _event("Spend-cap event (soft, hard or cleared)", "SpendEvent"),
        "/events/connection": _event(
            "Connection needs reauthorization, or is active again", "ConnectionEvent"
        ),
        "/events/throughput": _event("Throughput breaker tripped or cleared", "ThroughputEvent"),
        "/workspaces/{workspace}": {
            "get": {
                "summary": "A workspace's routing and the Slack team bound to it",
                "parameters": [_WORKSPACE],
                "responses": {
                    "200": _json("Workspace", "The routing, with `slack`"),
                    **_errors(422),
                },
            },
            "put": {
                "summary": "Set where a workspace's alerts go",
                "parameters": [_WORKSPACE],
                "requestBody": _body("WorkspaceRouting"),
                "responses": {
                    "200": _json("Workspace", "The routing now in force"),
                    **_errors(413, 422),
                },
            },
        },
        "/workspaces/{workspace}/slack/install-link": {
            "post": {
                "summary": "Distributed mode: a single-use, 30-minute Add to Slack link that"
                " binds the installing Slack team to this workspace",
                "parameters": [_WORKSPACE],
                "responses": {
                    "201": _json("InstallLink", "The link (the workspace is created if new)"),
                    **_errors(409, 422),
                },
            }
        },
        "/workspaces/{workspace}/slack": {
            "delete": {
                "summary": "Disconnect Slack: revoke the token, forget it, stop Slack delivery"
                " (email continues); the platform gets slack.uninstalled (disconnected)",
                "parameters": [_WORKSPACE],
                "responses": {
                    "200": _json("Workspace", "The routing, with `slack` null"),
                    **_errors(404, 409, 422),
                },
            }
        },
        "/outbox": {
            "get": {
                "summary": "Outbox items by status (dead letters by default)",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "enum": [s.value for s in OutboxStatus],
                            "default": OutboxStatus.DEAD.value,
                        },
                    },
                    _LIMIT,
                    _CURSOR,
                ],
                "responses": {"200": _json("OutboxPage", "A page of items"), **_errors(422)},
            }
        },
        "/outbox/{id}/retry": {
            "post": {
                "summary": "Put a dead-lettered item back in line",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {
                    "200": {
                        "description": "Queued again",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(404),
                },
            }
        },
    }


def openapi_document(public_url: str) -> dict[str, Any]:
    """The document served at /api/v1/openapi.json."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TaskJuice ChatOps bot API",
            "version": "1.0.0",
            "description": "Approval requests and alert events from the TaskJuice platform.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": f"{public_url}/api/v1"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**SCHEMAS, **_RESPONSES},
        },
    }
