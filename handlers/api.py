"""The platform's HTTP API under /api/v1: parse, call one function of `bot/`, render JSON."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from bot import alerts, approvals, decisions
from bot.domain import OutboxStatus, TaskStatus
from bot.errors import UNAVAILABLE, BotError, Conflict, NotFound, ValidationFailed
from bot.outbox import dispatcher
from bot.platform.openapi import openapi_document
from bot.platform.schemas import WORKSPACE_PATTERN
from bot.platform.validation import check_schema, load_json, parse_new_approval, whole_number
from bot.runtime.keys import METRICS, POOL, SETTINGS, TEAMS
from bot.slack import teams as slack_teams

__all__ = ["api_app"]

log = logging.getLogger(__name__)

_STATUSES = tuple(s.value for s in TaskStatus)
_OUTBOX_STATUSES = tuple(s.value for s in OutboxStatus)
_INT64 = 2**63 - 1
_PUBLIC_ROUTE = "openapi"  # the one route served without a token

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_app() -> web.Application:
    """The /api/v1 sub-application; settings, pool and metrics come from the parent."""
    app = web.Application(middlewares=[_errors, _authenticate])
    app.router.add_get("/openapi.json", openapi, allow_head=False, name=_PUBLIC_ROUTE)
    app.router.add_post("/approvals", create_approval)
    app.router.add_get("/approvals", list_approvals, allow_head=False)
    app.router.add_get("/approvals/{id}", get_approval, allow_head=False)
    app.router.add_post("/approvals/{id}/cancel", cancel_approval)
    app.router.add_post("/events/spend", spend_event)
    app.router.add_post("/events/connection", connection_event)
    app.router.add_post("/events/throughput", throughput_event)
    app.router.add_put("/workspaces/{workspace}", put_workspace)
    app.router.add_get("/workspaces/{workspace}", get_workspace, allow_head=False)
    app.router.add_post("/workspaces/{workspace}/slack/install-link", create_install_link)
    app.router.add_delete("/workspaces/{workspace}/slack", disconnect_slack)
    app.router.add_get("/outbox", list_outbox, allow_head=False)
    app.router.add_post("/outbox/{id}/retry", retry_outbox)
    return app


def _error(status: int, message: str, fields: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "fields": fields or {}}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as JSON `{"error", "fields"}`; nothing leaves as a bare 500."""
    try:
        return await handler(request)
    except ValidationFailed as exc:
        return _error(exc.status, exc.message, exc.fields)
    except BotError as exc:
        return _error(exc.status, exc.message)
    except web.HTTPRequestEntityTooLarge:
        limit = request.config_dict[SETTINGS].max_body_bytes
        return _error(413, f"The request body is larger than {limit} bytes.")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except UNAVAILABLE as exc:
        log.warning(
            "database unavailable",
            extra={"event": "api.db_unavailable", "error": type(exc).__name__},
        )
        return _error(503, "The database is unavailable; retry later.")
    except Exception:
        log.exception("request failed", extra={"event": "api.error", "path": request.path})
        return _error(500, "Internal error; it has been logged.")


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    # The route the request matched, never a suffix of its path: `PUT /workspaces/openapi.json`
    # matches the workspace route and needs a token like every other.
    if request.match_info.route.name == _PUBLIC_ROUTE:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    valid = request.config_dict[SETTINGS].api_tokens
    if scheme.lower() != "bearer" or not any(
        hmac.compare_digest(token.strip().encode(), t.encode()) for t in valid
    ):
        response = _error(401, "A valid bearer token is required.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="taskjuice-bot"'
        return response
    return await handler(request)


async def _json_body(request: web.Request, *, optional: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip() and optional:
        return {}
    return load_json(raw)


def _task_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["id"])
    except ValueError:
        raise NotFound("No such approval task.") from None


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.config_dict[SETTINGS].public_url))


async def create_approval(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    body = await _json_body(request)
    key = request.headers.get("Idempotency-Key")
    # isprintable() also refuses NUL and the lone surrogates a non-UTF-8 header byte becomes.
    if key is not None and not (0 < len(key) <= 255 and key.isprintable()):
        raise ValidationFailed({"Idempotency-Key": "must be 1 to 255 printable characters"})
    new = parse_new_approval(body, allow_proceed_irreversible=settings.allow_proceed_irreversible)
    digest = approvals.request_hash(body)
    view, replayed = await approvals.create(
        request.config_dict[POOL], new, idempotency_key=key, request_hash=digest
    )
    response = web.json_response(view, status=201)
    response.headers["Location"] = f"/api/v1/approvals/{view['id']}"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def get_approval(request: web.Request) -> web.Response:
    view = await approvals.get(request.config_dict[POOL], _task_id(request))
    return web.json_response(view.as_json())


def _limit(request: web.Request) -> int:
    limit = whole_number(request.query.get("limit", "50"), 200)
    if not limit:
        raise ValidationFailed({"limit": "must be a whole number from 1 to 200"})
    return limit


def _cursor_out(created_at: str, task_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}|{task_id}".encode()).decode()


def _cursor_in(raw: str) -> tuple[datetime, UUID]:
    try:
        if not raw.isascii() or len(raw) > 200:
            raise ValueError(raw)
        created_at, task_id = base64.urlsafe_b64decode(raw.encode()).decode().split("|")
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None:
            raise ValueError(created_at)
        return when, UUID(task_id)
    except (ValueError, binascii.Error):
        raise ValidationFailed({"cursor": "is not a cursor this API returned"}) from None


async def list_approvals(request: web.Request) -> web.Response:
    fields: dict[str, str] = {}
    status = request.query.get("status") or None
    if status is not None and status not in _STATUSES:
        fields["status"] = "must be one of " + ", ".join(_STATUSES)
    workspace = request.query.get("workspace") or None
    if workspace is not None and not re.fullmatch(WORKSPACE_PATTERN, workspace):
        # No workspace has such a name, and a NUL would not even reach the query.
        fields["workspace"] = "must be a URL-safe slug (letters, digits, . _ -)"
    limit, after = 50, None
    try:
        limit = _limit(request)
    except ValidationFailed as exc:
        fields |= exc.fields
    try:
        after = _cursor_in(request.query["cursor"]) if request.query.get("cursor") else None
    except ValidationFailed as exc:
        fields |= exc.fields
    if fields:
        raise ValidationFailed(fields)
    views = await approvals.list_page(
        request.config_dict[POOL], workspace=workspace, status=status, limit=limit, after=after
    )
    items = [view.as_json() for view in views]
    last = items[-1] if len(items) == limit else None
    cursor = _cursor_out(last["created_at"], last["id"]) if last else None
    return web.json_response({"items": items, "next_cursor": cursor})


async def cancel_approval(request: web.Request) -> web.Response:
    task_id = _task_id(request)
    body = check_schema("Cancel", await _json_body(request, optional=True))
    result = await decisions.cancel(
        request.config_dict[POOL],
        task_id,
        reason=body.get("reason"),
        metrics=request.config_dict[METRICS],
    )
    view = await approvals.get(request.config_dict[POOL], task_id)
    if result.verdict is decisions.Verdict.ALREADY_FINISHED and view.status != TaskStatus.CANCELLED:
        raise Conflict(f"The task is already {view.status.value}; it cannot be cancelled.")
    return web.json_response(view.as_json())


async def spend_event(request: web.Request) -> web.Response:
    answer = await alerts.spend_event(request.config_dict[POOL], await _json_body(request))
    return web.json_response(answer, status=202)


async def connection_event(request: web.Request) -> web.Response:
    answer = await alerts.connection_event(request.config_dict[POOL], await _json_body(request))
    return web.json_response(answer, status=202)


async def throughput_event(request: web.Request) -> web.Response:
    answer = await alerts.throughput_event(request.config_dict[POOL], await _json_body(request))
    return web.json_response(answer, status=202)


async def put_workspace(request: web.Request) -> web.Response:
    workspace = request.match_info["workspace"]
    if not re.fullmatch(WORKSPACE_PATTERN, workspace):
        raise ValidationFailed({"workspace": "must be a URL-safe slug (letters, digits, . _ -)"})
    routing = await alerts.set_routing(
        request.config_dict[POOL], workspace, await _json_body(request)
    )
    return web.json_response(routing)


async def list_outbox(request: web.Request) -> web.Response:
    status = request.query.get("status", "dead")
    fields: dict[str, str] = {}
    if status not in _OUTBOX_STATUSES:
        fields["status"] = "must be one of " + ", ".join(_OUTBOX_STATUSES)
    raw_after = request.query.get("cursor")
    after = whole_number(raw_after, _INT64) if raw_after else None
    if raw_after and after is None:
        fields["cursor"] = "is not a cursor this API returned"
    try:
        limit = _limit(request)
    except ValidationFailed as exc:
        fields |= exc.fields
    if fields:
        raise ValidationFailed(fields)
    rows = await dispatcher.list_items(
        request.config_dict[POOL], status=status, limit=limit, after=after
    )
    items = [
        {
            k: (str(v) if isinstance(v, UUID) else v.isoformat() if isinstance(v, datetime) else v)
            for k, v in row.items()
        }
        for row in rows
    ]
    cursor = str(rows[-1]["id"]) if len(rows) == limit else None
    return web.json_response({"items": items, "next_cursor": cursor})


async def retry_outbox(request: web.Request) -> web.Response:
    item = whole_number(request.match_info["id"], _INT64)
    if item is None:
        raise NotFound("No such dead-lettered outbox item.")
    if not await dispatcher.retry(request.config_dict[POOL], item):
        raise NotFound("No such dead-lettered outbox item.")
    return web.json_response({"id": item, "status": OutboxStatus.PENDING.value})


def _workspace(request: web.Request) -> str:
    workspace = request.match_info["workspace"]
    if not re.fullmatch(WORKSPACE_PATTERN, workspace):
        raise ValidationFailed({"workspace": "must be a URL-safe slug (letters, digits, . _ -)"})
    return workspace


def _distributed_teams(request: web.Request) -> slack_teams.SlackTeams:
    teams = request.config_dict.get(TEAMS)
    if teams is None or not teams.distributed:
        raise Conflict(
            "Slack distribution is off: set SLACK_CLIENT_ID (and its companions) to connect"
            " workspaces by install links."
        )
    return teams


async def get_workspace(request: web.Request) -> web.Response:
    view = await slack_teams.workspace_view(request.config_dict[POOL], _workspace(request))
    return web.json_response(view)


async def create_install_link(request: web.Request) -> web.Response:
    workspace = _workspace(request)
    teams = _distributed_teams(request)
    url, expires_at = await teams.install_link(workspace, request.config_dict[SETTINGS].public_url)
    return web.json_response({"url": url, "expires_at": slack_teams.iso(expires_at)}, status=201)


async def disconnect_slack(request: web.Request) -> web.Response:
    workspace = _workspace(request)
    teams = _distributed_teams(request)
    if not await teams.disconnect(workspace):
        raise NotFound("No Slack team is connected to this workspace.")
    view = await slack_teams.workspace_view(request.config_dict[POOL], workspace)
    return web.json_response(view)
