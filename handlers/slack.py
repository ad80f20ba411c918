"""Slack's inbound edge: buttons, the deny modal, `/taskjuice`, App Home (async Bolt).

Every decision is committed through `bot.decisions.decide()` before the request is
acknowledged (Bolt with `process_before_response=True`); Slack updates, explanations and
callbacks go through the outbox, so nothing slow runs before the answer to Slack.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot import alerts, decisions
from bot.decisions import DecisionResult
from bot.domain import Actor, Channel, Outcome
from bot.errors import BotError, NotFound
from bot.platform.schemas import WORKSPACE_PATTERN
from bot.runtime.config import Settings
from bot.runtime.metrics import Metrics
from bot.slack.alert_blocks import RESUME_ACTION
from bot.slack.blocks import (
    APPROVE_ACTION,
    DENY_ACTION,
    DENY_MODAL,
    deny_modal,
    notice_view,
    parse_button_value,
)
from bot.slack.delivery import EPHEMERAL, queue_home
from bot.slack.home import HELP_TEXT, approvals_blocks, pending_approvals
from bot.wording import explain
from store import alerts as alert_store
from store import outbox, tasks
from store import slack as store
from store.database import UNAVAILABLE

__all__ = ["SignatureCheck", "build_bolt", "oauth_route", "refusal", "slack_route"]

log = logging.getLogger("taskjuice.slack")


def slack_route(bolt: AsyncApp, signing_secret: str) -> Any:
    """The aiohttp handler for POST /slack/events (signature checked by `SignatureCheck`)."""

    async def handle(request: web.Request) -> web.Response:
        try:
            bolt_request = await to_bolt_request(request)
            return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

        except Exception as exc:
            # Bolt could not even read the payload; only a correctly signed one earns a 400.
            refused = refusal(
                signing_secret,
                await request.read(),
                request.headers.get("X-Slack-Request-Timestamp", ""),
                request.headers.get("X-Slack-Signature", ""),
            )
            log.warning(
                "unreadable Slack payload",
                extra={
                    "event": "slack.bad_payload",
                    "error": type(exc).__name__,
                    "signed": refused is None,
                },
            )
            return web.Response(status=400 if refused is None else 401)

    return handle


def oauth_route(bolt: AsyncApp) -> Any:
    """The aiohttp handler for GET /slack/install and /slack/oauth_redirect: Bolt's OAuth
    flow (distributed mode)."""

    async def handle(request: web.Request) -> web.Response:
        flow = bolt.oauth_flow
        if flow is None:
            raise web.HTTPNotFound()
        bolt_request = await to_bolt_request(request)
        if request.path == flow.install_path:
            return await to_aiohttp_response(await flow.handle_installation(bolt_request))
        return await to_aiohttp_response(await flow.handle_callback(bolt_request))

    return handle


# Slack's window is five minutes; a timestamp of more digits than "now" is no timestamp.
_WINDOW = 300
_TIMESTAMP_DIGITS = 12
_SIGNATURE = re.compile("v0=[0-9a-f]{64}")


def refusal(secret: str, body: bytes | str, timestamp: str, signature: str) -> str | None:
    """Why a request is not signed by Slack (None when it is): `v0=` and the hex HMAC-SHA256
    of `v0:{timestamp}:{raw body}`, the timestamp within five minutes.

    The header shapes are checked first: slack-sdk's `SignatureVerifier` raises on a timestamp
    of unicode digits (`²`) or of hundreds of digits, on a signature that is not ASCII, and on
    a body that is not UTF-8, where the answer must be a 401.
    """
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _TIMESTAMP_DIGITS):
        return "malformed timestamp"
    if abs(time.time() - int(timestamp)) > _WINDOW:
        return "stale timestamp"
    if not _SIGNATURE.fullmatch(signature):
        return "malformed signature"
    raw = body.encode() if isinstance(body, str) else body
    expected = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + raw, hashlib.sha256)
    if not hmac.compare_digest("v0=" + expected.hexdigest(), signature):
        return "wrong signature"
    return None


class SignatureCheck(AsyncMiddleware):
    """Bolt's request verification, without its two faults: slack-sdk raises (a 500) on some
    malformed headers, and Bolt logs every refused request's whole body at INFO, so anyone
    could fill the logs, and a real payload refused for clock skew would leave its
    `response_url` there. A refusal is one structured line naming the reason, and a 401."""

    def __init__(self, signing_secret: str) -> None:
        self.signing_secret = signing_secret

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse:
        if req.mode == "socket_mode":
            return await next()  # the app token authenticates the socket, as in Bolt
        refused = refusal(
            self.signing_secret,
            req.raw_body,
            _header(req, "x-slack-request-timestamp"),
            _header(req, "x-slack-signature"),
        )
        if refused is None:
            return await next()
        log.info(
            "refused a Slack request that Slack did not sign",
            extra={"event": "slack.unverified", "reason": refused, "bytes": len(req.raw_body)},
        )
        return BoltResponse(status=401, body="")


def _header(req: AsyncBoltRequest, name: str) -> str:
    values = req.headers.get(name) or [""]
    return str(values[0])


def build_bolt(
    settings: Settings,
    pool: asyncpg.Pool,
    client: AsyncWebClient,
    metrics: Metrics,
    *,
    oauth_flow: AsyncOAuthFlow | None = None,
    authorize: AsyncAuthorize | None = None,
) -> AsyncApp:
    """The Bolt app with every listener; it shares the process's pool and Web API client.

    The token is configured once, in `client`. Bolt reads $SLACK_BOT_TOKEN for itself when
    given a client and no token, then warns at start-up that the token it read is unused;
    the service's settings have read the environment already, so it goes no further.
    """
    os.environ.pop("SLACK_BOT_TOKEN", None)
    secret = settings.slack_signing_secret or "socket-mode-needs-none"
    bolt = AsyncApp(
        client=client,
        signing_secret=secret,
        process_before_response=True,
        # Never unverified: `SignatureCheck` takes the place of Bolt's own check, before
        # authorization and the URL-verification answer, exactly where Bolt puts its own.
        request_verification_enabled=False,
        before_authorize=SignatureCheck(secret),
        logger=logging.getLogger("taskjuice.slack.bolt"),
        # distributed mode: the install flow, and each request authorized for its own team
        oauth_flow=oauth_flow,
        authorize=authorize,  # type: ignore[arg-type] # an AsyncAuthorize is accepted too
    )
    edge = _SlackEdge(settings=settings, pool=pool, client=client, metrics=metrics)
    bolt.action(re.compile(f"^{APPROVE_ACTION}$"))(_ours(edge.on_approve))
    bolt.action(re.compile(f"^{DENY_ACTION}$"))(_ours(edge.on_deny))
    bolt.action(re.compile(f"^{RESUME_ACTION}$"))(_ours(edge.on_resume))
    bolt.action(
        re.compile("^taskjuice_(open_inbox|adjust_cap|reconnect|runs|connections|open_workflow)$")
    )(_ours(edge.on_link))
    bolt.view(re.compile(f"^{DENY_MODAL}$"))(_ours(edge.on_deny_submit))
    bolt.command("/taskjuice")(_ours(edge.on_command))
    bolt.event("app_home_opened")(_ours(edge.on_home_opened))
    bolt.error(_on_error)
    return bolt


class ListenerFailed(BotError):
    """A listener failed on a payload Bolt had read: the service's fault, not the sender's."""

    status = 500


def _ours(listener: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A listener whose unexpected errors answer 500 and are logged with their traceback.

    Listeners read payloads defensively, so an error inside one (a row the code cannot read,
    a bug) must not pass for an unreadable payload (400) the way Bolt's own parsing errors do.
    """

    @functools.wraps(listener)
    async def run(*args: Any, **kwargs: Any) -> None:
        try:
            await listener(*args, **kwargs)
        except UNAVAILABLE:
            raise
        except Exception as exc:
            raise ListenerFailed(listener.__name__) from exc

    return run


async def _on_error(error: Exception) -> BoltResponse | None:
    """A signed payload Bolt cannot read is bad input (400); a listener's failure is ours (500)."""
    if isinstance(error, ListenerFailed):
        log.error(
            "Slack listener failed",
            exc_info=error.__cause__,
            extra={"event": "slack.listener_failed", "listener": error.message},
        )
        return BoltResponse(status=error.status, body="")
    if isinstance(error, (KeyError, TypeError, ValueError, AttributeError, IndexError)):
        log.warning(
            "unreadable Slack payload",
            extra={"event": "slack.bad_payload", "error": type(error).__name__},
        )
        return BoltResponse(status=400, body="")
    if isinstance(error, UNAVAILABLE):
        # Nothing was acknowledged, so Slack tells the person it failed and they can retry.
        log.warning(
            "database unavailable",
            extra={"event": "slack.db_unavailable", "error": type(error).__name__},
        )
        return BoltResponse(status=503, body="")
    log.error("Slack request failed", extra={"event": "slack.error", "error": type(error).__name__})
    return None


def _text(data: Any, *path: str | int) -> str:
    """The string at `path` in a payload (keys of objects, indexes of arrays), or "" where
    the payload has anything else there, or a string PostgreSQL cannot store (NUL):
    listeners never trust a payload's shape."""
    for step in path:
        if isinstance(step, int) and isinstance(data, list) and -len(data) <= step < len(data):
            data = data[step]
        elif isinstance(step, str) and isinstance(data, dict):
            data = data.get(step)
        else:
            return ""
    return data if isinstance(data, str) and "\x00" not in data else ""


class _SlackEdge:
    """The listeners; each parses, calls one function of `bot/`, and answers."""

    def __init__(
        self, *, settings: Settings, pool: asyncpg.Pool, client: AsyncWebClient, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.client = client
        self.metrics = metrics
        self._background: set[asyncio.Task[Any]] = set()

    @staticmethod
    def _person(body: dict[str, Any]) -> Actor:
        """Who clicked, by Slack ids (a decision finds their email in its own read)."""
        user_id = _text(body, "user", "id")
        team = _text(body, "team", "id") or _text(body, "user", "team_id")
        return Actor(slack_user_id=user_id or None, slack_team_id=team or None)

    async def _actor(self, body: dict[str, Any]) -> Actor:
        """Who clicked, with the email the bot has on file for them."""
        person = self._person(body)
        if person.slack_user_id is None:
            return person
        async with self.pool.acquire() as conn:
            email = await store.email_of(conn, person.slack_team_id or "", person.slack_user_id)
        return replace(person, email=email)

    async def _decide(
        self, body: dict[str, Any], raw_value: str, outcome: Outcome, reason: str | None = None
    ) -> DecisionResult | None:
        parsed = parse_button_value(raw_value)
        if parsed is None:
            return None
        task_id, tier, digest = parsed
        try:
            uuid = UUID(task_id)
        except ValueError:
            return None
        actor = self._person(body)
        if actor.slack_user_id is None:
            return None
        client = {
            "team_id": actor.slack_team_id,
            "channel": _text(body, "channel", "id") or None,
            "message_ts": _text(body, "container", "message_ts") or None,
        }

        async def decide(who: Actor) -> DecisionResult:
            return await decisions.decide(
                self.pool,
                task_id=uuid,
                actor=who,
                outcome=outcome,
                via=Channel.SLACK,
                reason=reason,
                client=client,
                content_hash=digest,
                tier=tier,
                metrics=self.metrics,
            )

        try:
            # Who the clicker is by email, when it matters, is resolved inside decide().
            return await decide(actor)
        except NotFound:
            return None

    async def _tell(self, body: dict[str, Any], result: DecisionResult | None) -> None:
        """Explain a refusal to the person, privately, through the outbox."""
        user = _text(body, "user", "id")
        channel = _text(body, "channel", "id")
        explain_it = bool(channel) and (result is None or not result.changed)
        refresh_home = _text(body, "container", "type") == "view" or not channel
        if not user or not (explain_it or refresh_home):
            return  # the common case, a click that counted: no second transaction
        async with self.pool.acquire() as conn, conn.transaction():
            if explain_it:
                view = await tasks.task_view(conn, result.task.id) if result else None
                text = explain(result, view)
                await outbox.enqueue(
                    conn, EPHEMERAL, {"channel": channel, "user": user, "text": text}
                )
            if refresh_home:
                await queue_home(conn, user)

    async def on_approve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        result = await self._decide(body, _text(body, "actions", 0, "value"), Outcome.APPROVE)
        await self._tell(body, result)
        await ack()

    async def on_deny(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        value = _text(body, "actions", 0, "value")
        parsed = parse_button_value(value)
        trigger = _text(body, "trigger_id")
        await ack()
        if parsed is None or not trigger:
            return
        meta = json.dumps(
            {
                "v": value,
                "c": _text(body, "channel", "id"),
                "k": _text(body, "container", "type"),
            }
        )
        async with self.pool.acquire() as conn:
            try:
                view = await tasks.task_view(conn, UUID(parsed[0]))
            except ValueError:
                view = None
        if view is None:
            return
        # Opening a modal is not a decision: it runs after the ack and may be retried by a click.
        task = asyncio.create_task(
            self.client.views_open(trigger_id=trigger, view=deny_modal(view, meta))
        )
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "slack modal not opened",
                extra={"event": "slack.modal_failed", "error": type(task.exception()).__name__},
            )

    async def on_deny_submit(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        try:
            meta = json.loads(_text(body, "view", "private_metadata") or "{}")
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            meta = {}
        reason = _text(body, "view", "state", "values", "reason", "reason", "value") or None
        body = body | {
            "channel": {"id": meta.get("c")} if meta.get("c") else None,
            "container": {"type": meta.get("k")},
        }
        result = await self._decide(body, str(meta.get("v", "")), Outcome.DENY, reason=reason)
        if result is not None and result.changed:
            await ack()
            return
        async with self.pool.acquire() as conn:
            task = await tasks.task_view(conn, result.task.id) if result else None
        await ack(response_action="update", view=notice_view("Not recorded", explain(result, task)))

    async def on_resume(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        raw = _text(body, "actions", 0, "value")
        actor = await self._actor(body)
        if raw.isdigit() and actor.slack_user_id:
            await alerts.request_resume(self.pool, int(raw), actor.as_json(), "slack")
        await ack()

    async def on_link(self, ack: AsyncAck) -> None:
        await ack()  # link buttons open their URL in Slack; there is nothing to do here

    async def on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        words = str(command.get("text", "")).split()
        sub = words[0].lower() if words else "help"
        if sub == "approvals":
            await ack(blocks=await self._approvals(command), text="Your pending approvals")
        elif sub == "subscribe" and len(words) == 2:
            await ack(text=await self._subscribe(command, words[1]))
        elif sub == "unsubscribe":
            await ack(text=await self._unsubscribe(command))
        else:
            await ack(text=HELP_TEXT)

    async def _approvals(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        user, team = str(command.get("user_id", "")), str(command.get("team_id", ""))
        views, hashes = await pending_approvals(self.pool, team, user)
        return approvals_blocks(views, hashes, app_url=self.settings.taskjuice_app_url)

    async def _subscribe(self, command: dict[str, Any], workspace: str) -> str:
        channel, team = str(command.get("channel_id", "")), str(command.get("team_id", ""))
        if not re.fullmatch(WORKSPACE_PATTERN, workspace):
            return "That is not a workspace name: use letters, digits, `.`, `_` and `-`."
        if not channel.startswith(("C", "G")):
            return "Run `/taskjuice subscribe` in the channel that should receive the alerts."
        async with self.pool.acquire() as conn, conn.transaction():
            current = await alert_store.routing(conn, workspace)
            if current.get("slack_team_id") and current["slack_team_id"] != team:
                return "That workspace's alerts go to another Slack workspace."
            await alert_store.set_routing(
                conn, workspace, {"slack_channel": channel, "slack_team_id": team}
            )
        return f"This channel now receives the alerts of *{workspace}*."

    async def _unsubscribe(self, command: dict[str, Any]) -> str:
        channel = str(command.get("channel_id", ""))
        async with self.pool.acquire() as conn:
            names = await alert_store.unroute_channel(conn, channel)
        if not names:
            return "This channel receives no TaskJuice alerts."
        return (
            "This channel no longer receives the alerts of "
            + ", ".join(f"*{n}*" for n in names)
            + "."
        )

    async def on_home_opened(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        user = event.get("user")
        if event.get("tab", "home") != "home" or not isinstance(user, str) or not user:
            return
        team = str(body.get("team_id") or "")
        async with self.pool.acquire() as conn, conn.transaction():
            if team:
                await store.home_seen(conn, team, user)
            await queue_home(conn, user)
