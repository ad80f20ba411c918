"""The Bolt app and its listeners: buttons, the deny modal, `/taskjuice`, App Home, and the
events that revoke an installation. Each listener parses, calls one function of
`bot.slack.interactions`, and answers."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import Actor
from bot.errors import UNAVAILABLE, BotError
from bot.runtime.config import Settings
from bot.runtime.metrics import Metrics
from bot.slack import interactions
from bot.slack.alert_blocks import RESUME_ACTION
from bot.slack.blocks import APPROVE_ACTION, DENY_ACTION, DENY_MODAL
from bot.slack.teams import SlackTeams
from handlers.slack.routes import SignatureCheck

__all__ = ["ListenerFailed", "build_bolt"]

log = logging.getLogger(__name__)


def build_bolt(
    settings: Settings,
    pool: asyncpg.Pool,
    client: AsyncWebClient,
    metrics: Metrics,
    *,
    teams: SlackTeams,
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
        logger=log,  # Bolt logs as the Slack edge (held at INFO: its debug output has bodies)
        # distributed mode: the install flow, and each request authorized for its own team
        oauth_flow=oauth_flow,
        authorize=authorize,  # type: ignore[arg-type] # an AsyncAuthorize is accepted too
    )
    edge = _SlackEdge(settings=settings, pool=pool, client=client, metrics=metrics, teams=teams)
    bolt.action(re.compile(f"^{APPROVE_ACTION}$"))(_ours(edge.on_approve))
    bolt.action(re.compile(f"^{DENY_ACTION}$"))(_ours(edge.on_deny))
    bolt.action(re.compile(f"^{RESUME_ACTION}$"))(_ours(edge.on_resume))
    bolt.action(
        re.compile("^taskjuice_(open_inbox|adjust_cap|reconnect|runs|connections|open_workflow)$")
    )(_ours(edge.on_link))
    bolt.view(re.compile(f"^{DENY_MODAL}$"))(_ours(edge.on_deny_submit))
    bolt.command("/taskjuice")(_ours(edge.on_command))
    bolt.event("app_home_opened")(_ours(edge.on_home_opened))
    revoked = _Revocations(teams)
    for event in interactions.REVOKING_EVENTS:
        bolt.event(event)(_ours(revoked.on_revoked))
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
    """The listeners; each parses, calls one function of `bot.slack.interactions`, and answers."""

    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        client: AsyncWebClient,
        metrics: Metrics,
        teams: SlackTeams,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.client = client
        self.metrics = metrics
        self.teams = teams
        self._background: set[asyncio.Task[Any]] = set()

    @staticmethod
    def _person(body: dict[str, Any]) -> Actor:
        """Who clicked, by Slack ids (a decision finds their email in its own read). Their
        team is their own (`user.team_id`): a Slack Connect guest's differs from `team.id`,
        the team whose workspace they clicked in."""
        user_id = _text(body, "user", "id")
        team = _text(body, "user", "team_id") or _text(body, "team", "id")
        return Actor(slack_user_id=user_id or None, slack_team_id=team or None)

    @staticmethod
    def _where(body: dict[str, Any]) -> tuple[str | None, str | None]:
        """The team whose workspace the click happened in, and the clicker's organisation
        (known only when the clicker is of that team: a guest's is not in the payload)."""
        context = _text(body, "team", "id")
        own = _text(body, "user", "team_id") or context
        enterprise = _text(body, "enterprise", "id") if own == context or not context else ""
        return context or None, enterprise or None

    def _click(self, body: dict[str, Any]) -> interactions.Click:
        """A button press: what it stands for, who pressed it, and where it was shown."""
        return interactions.Click(
            button=interactions.Button.read(_text(body, "actions", 0, "value")),
            actor=self._person(body),
            team=self._where(body)[0],
            enterprise=self._where(body)[1],
            channel=_text(body, "channel", "id") or None,
            message_ts=_text(body, "container", "message_ts") or None,
            container=_text(body, "container", "type"),
            trigger_id=_text(body, "trigger_id"),
        )

    async def on_approve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await interactions.approve(
            self.pool, self._click(body), teams=self.teams, metrics=self.metrics
        )
        await ack()

    async def on_deny(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        click = self._click(body)
        await ack()
        # What the modal's submission needs to know of the button and where it was shown.
        meta = json.dumps(
            {
                "v": _text(body, "actions", 0, "value"),
                "c": _text(body, "channel", "id"),
                "k": _text(body, "container", "type"),
            }
        )
        view = await interactions.deny_form(self.pool, click, meta, teams=self.teams)
        if view is None:
            return
        # Opening a modal is not a decision: it runs after the ack and may be retried by a click.
        task = asyncio.create_task(self._open_modal(click, view))
        self._background.add(task)
        task.add_done_callback(self._done)

    async def _open_modal(self, click: interactions.Click, view: dict[str, Any]) -> None:
        """views.open with the token of the team the click happened in (distributed mode)."""
        client = self.client
        if self.teams.distributed and click.team is not None:
            client = await self.teams.client_for(click.team, click.enterprise)
        await client.views_open(trigger_id=click.trigger_id, view=view)

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
        click = interactions.Click(
            button=interactions.Button.read(str(meta.get("v", ""))),
            actor=self._person(body),
            team=self._where(body)[0],
            enterprise=self._where(body)[1],
            channel=_text(meta, "c") or None,
            container=_text(meta, "k"),
            reason=_text(body, "view", "state", "values", "reason", "reason", "value") or None,
        )
        notice = await interactions.deny_submitted(
            self.pool, click, teams=self.teams, metrics=self.metrics
        )
        if notice is None:
            await ack()
        else:
            await ack(response_action="update", view=notice)

    async def on_resume(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        raw = _text(body, "actions", 0, "value")
        if raw.isdigit():
            await interactions.resume(self.pool, int(raw), self._click(body), teams=self.teams)
        await ack()

    async def on_link(self, ack: AsyncAck) -> None:
        await ack()  # link buttons open their URL in Slack; there is nothing to do here

    async def on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        typed = interactions.Command(
            text=str(command.get("text", "")),
            user=str(command.get("user_id", "")),
            team=str(command.get("team_id", "")),
            channel=str(command.get("channel_id", "")),
            enterprise=str(command.get("enterprise_id") or "") or None,
        )
        answer = await interactions.command(
            self.pool,
            typed,
            app_url=self.settings.taskjuice_app_url,
            teams=self.teams,
            subscribe_anyone=self.settings.slack_subscribe_anyone,
        )
        await ack(**answer)

    async def on_home_opened(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        user = event.get("user")
        if event.get("tab", "home") != "home" or not isinstance(user, str) or not user:
            return
        await interactions.home_opened(self.pool, str(body.get("team_id") or ""), user)


class _Revocations:
    """`app_uninstalled` and `tokens_revoked`: the team's installation is revoked."""

    def __init__(self, teams: SlackTeams) -> None:
        self.teams = teams

    async def on_revoked(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        await interactions.installation_revoked(self.teams, event, body)
