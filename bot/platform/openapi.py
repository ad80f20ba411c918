"""The OpenAPI 3.1 document of /api/v1, built from the same schemas that validate requests."""

from __future__ import annotations

from functools import cache
from typing import Any

from bot.domain import OutboxStatus, TaskStatus
from bot.platform.responses import RESPONSE_SCHEMAS
from bot.platform.schemas import SCHEMAS, WORKSPACE_PATTERN

__all__ = ["openapi_document"]


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
                        "schema": {"enum": [s.value for s in TaskStatus]},
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
            "schemas": {**SCHEMAS, **RESPONSE_SCHEMAS},
        },
    }
