"""What a Slack click, modal or command means: the core that the Slack edge calls.

`handlers/slack/` reads a payload into one small value (a `Click`, a `Command`) and calls
one function here; each decides through `bot.decisions.decide()` (which resolves who the
clicker is, asking Slack once when the bot's cache cannot tell), queues what the person is
told (a private explanation of a refused click, an App Home refresh) through the outbox in
the same breath, and returns only what the edge needs for its acknowledgement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import asyncpg

from bot import alerts, decisions
from bot.alerts import Subscription
from bot.decisions import DecisionResult
from bot.domain import Actor, Channel, Outcome
from bot.errors import NotFound
from bot.platform.schemas import WORKSPACE_PATTERN
from bot.runtime.metrics import Metrics
from bot.slack.blocks import deny_modal, notice_view, parse_button_value
from bot.slack.delivery import EPHEMERAL, queue_home
from bot.slack.home import HELP_TEXT, approvals_blocks, pending_approvals
from bot.slack.teams import SlackTeams
from bot.slack.tenancy import Member, RouteRight, may_route, viewer_workspaces, works_for
from bot.wording import explain
from store import alerts as alert_store
from store import outbox, tasks
from store import slack as slack_store

__all__ = [
    "FOREIGN_TEXT",
    "Button",
    "Click",
    "Command",
    "approve",
    "command",
    "deny_form",
    "deny_submitted",
    "home_opened",
    "installation_revoked",
    "resume",
]


@dataclass(frozen=True, slots=True)
class Button:
    """What an approve or deny button stands for: the task, its tier and content as shown."""

    task_id: UUID
    tier: int
    digest: str

    @classmethod
    def read(cls, raw: str) -> Button | None:
        """The button behind a button value, or None when the value is not one of ours."""
        parsed = parse_button_value(raw)
        if parsed is None:
            return None
        try:
            return cls(UUID(parsed[0]), parsed[1], parsed[2])
        except ValueError:
            return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Click:
    """One approve or deny from Slack (a button, or the deny modal sent), as read."""

    button: Button | None
    """None when the payload carries no button of ours: the click is explained, not decided."""
    actor: Actor
    """Who clicked, by Slack user and their own team (their email is found by the decision)."""
    enterprise: str | None = None
    """The clicker's Enterprise Grid organisation, when the payload names it."""
    team: str | None = None
    """The team whose workspace the click happened in (a Slack Connect guest's differs from
    their own): where a private answer is shown."""
    channel: str | None = None
    """Where the message was shown (None in App Home, which has no channel)."""
    message_ts: str | None = None
    container: str = ""
    """Slack's container type: "message", or "view" for App Home."""
    trigger_id: str = ""
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """`/taskjuice …` as typed, and where."""

    text: str
    user: str
    team: str
    channel: str
    enterprise: str | None = None

    @property
    def member(self) -> Member:
        return Member(self.user, self.team or None, self.enterprise)


FOREIGN_TEXT = (
    "This request belongs to another Slack workspace: only its own members can decide it."
)


def _member(click: Click) -> Member:
    return Member(click.actor.slack_user_id or "", click.actor.slack_team_id, click.enterprise)


async def _foreign(pool: asyncpg.Pool, teams: SlackTeams, click: Click) -> bool:
    """Whether the clicked task exists and belongs to a workspace whose bound Slack team is
    not the clicker's: such a click never reaches a decision (nor any matching by email)."""
    if click.button is None or click.actor.slack_user_id is None:
        return False
    async with pool.acquire() as conn:
        workspace = await tasks.workspace_of(conn, click.button.task_id)
    if workspace is None:
        return False  # no such task: explained as such, nothing to protect
    return not await works_for(teams, workspace, _member(click))


async def _refuse(pool: asyncpg.Pool, click: Click) -> None:
    """Tell a clicker of another team privately that it did not count (where Slack allows an
    ephemeral message: in a channel; App Home has none)."""
    user = click.actor.slack_user_id
    if not user or not click.channel:
        return
    payload = _private(click, user, FOREIGN_TEXT)
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, EPHEMERAL, payload)


def _private(click: Click, user: str, text: str) -> dict[str, Any]:
    """A private answer in the channel clicked in, sent with the token of the team whose
    workspace that channel belongs to (for a Slack Connect clicker, not their own team)."""
    payload: dict[str, Any] = {"channel": click.channel, "user": user, "text": text}
    if click.team:
        payload["team_id"] = click.team
    return payload


async def _decide(
    pool: asyncpg.Pool, click: Click, outcome: Outcome, metrics: Metrics | None
) -> DecisionResult | None:
    """The decision a click comes to (None when it names no task that exists)."""
    if click.button is None or click.actor.slack_user_id is None:
        return None
    try:
        return await decisions.decide(
            pool,
            task_id=click.button.task_id,
            actor=click.actor,
            outcome=outcome,
            via=Channel.SLACK,
            reason=click.reason,
            client={
                "team_id": click.actor.slack_team_id,
                "channel": click.channel,
                "message_ts": click.message_ts,
            },
            content_hash=click.button.digest,
            tier=click.button.tier,
            metrics=metrics,
        )
    except NotFound:
        return None


async def approve(
    pool: asyncpg.Pool, click: Click, *, teams: SlackTeams, metrics: Metrics | None = None
) -> DecisionResult | None:
    """An Approve button: decide, then queue what the clicker is told.

    A refused click is explained privately where it was shown; a click in App Home (or
    anywhere without a channel) refreshes the clicker's App Home. A click that counted, in a
    channel, needs neither: its message updates through the outbox. A click by someone of
    another Slack team than the task's decides nothing and is refused privately.
    """
    if await _foreign(pool, teams, click):
        await _refuse(pool, click)
        return None
    result = await _decide(pool, click, Outcome.APPROVE, metrics)
    user = click.actor.slack_user_id
    explain_it = bool(click.channel) and (result is None or not result.changed)
    refresh_home = click.container == "view" or not click.channel
    if not user or not (explain_it or refresh_home):
        return result  # the common case, a click that counted: no second transaction
    async with pool.acquire() as conn, conn.transaction():
        if explain_it:
            view = await tasks.task_view(conn, result.task.id) if result else None
            await outbox.enqueue(conn, EPHEMERAL, _private(click, user, explain(result, view)))
        if refresh_home:
            await queue_home(conn, user, click.team or click.actor.slack_team_id)
    return result


async def deny_form(
    pool: asyncpg.Pool, click: Click, private_metadata: str, *, teams: SlackTeams
) -> dict[str, Any] | None:
    """The Deny modal to open for a Deny button (None when there is nothing to deny; someone
    of another Slack team is refused privately instead)."""
    if click.button is None or not click.trigger_id:
        return None
    if await _foreign(pool, teams, click):
        await _refuse(pool, click)
        return None
    async with pool.acquire() as conn:
        view = await tasks.task_view(conn, click.button.task_id)
    return deny_modal(view, private_metadata) if view is not None else None


async def deny_submitted(
    pool: asyncpg.Pool, click: Click, *, teams: SlackTeams, metrics: Metrics | None = None
) -> dict[str, Any] | None:
    """The Deny modal was sent: decide. Returns the view to replace the modal with when the
    denial did not count (saying why), or None to close it."""
    if await _foreign(pool, teams, click):
        return notice_view("Not recorded", FOREIGN_TEXT)
    result = await _decide(pool, click, Outcome.DENY, metrics)
    if result is not None and result.changed:
        return None
    async with pool.acquire() as conn:
        view = await tasks.task_view(conn, result.task.id) if result else None
    return notice_view("Not recorded", explain(result, view))


RESUME_FOREIGN_TEXT = (
    "This workflow belongs to another Slack workspace: only its own members can resume it."
)


async def resume(pool: asyncpg.Pool, alert_id: int, click: Click, *, teams: SlackTeams) -> bool:
    """Resume workflow on a tripped breaker, as the clicker (with the email the bot has on
    file for them, and their team recorded in the callback); False when there is nothing to
    resume, or the clicker is not a member of the team bound to the alert's workspace (told
    so privately)."""
    actor = click.actor
    if actor.slack_user_id is None:
        return False
    async with pool.acquire() as conn:
        alert = await alert_store.get(conn, alert_id)
    if alert is None:
        return False
    if not await works_for(teams, str(alert["workspace"]), _member(click)):
        if click.channel:
            payload = _private(click, actor.slack_user_id, RESUME_FOREIGN_TEXT)
            async with pool.acquire() as conn, conn.transaction():
                await outbox.enqueue(conn, EPHEMERAL, payload)
        return False
    async with pool.acquire() as conn:
        email = await slack_store.email_of(conn, actor.slack_team_id or "", actor.slack_user_id)
    who = replace(actor, email=email).as_json() | {"slack_team_id": actor.slack_team_id}
    return await alerts.request_resume(pool, alert_id, who, "slack")


async def command(
    pool: asyncpg.Pool,
    typed: Command,
    *,
    app_url: str,
    teams: SlackTeams,
    subscribe_anyone: bool = False,
) -> dict[str, Any]:
    """`/taskjuice approvals | subscribe <workspace> | unsubscribe | help`: the answer, as
    the arguments of the command's acknowledgement. `subscribe_anyone` is
    SLACK_SUBSCRIBE_ANYONE (single-workspace mode)."""
    words = typed.text.split()
    sub = words[0].lower() if words else "help"
    if sub == "approvals":
        views, hashes = await pending_approvals(
            pool, typed.team, typed.user, workspaces=await viewer_workspaces(teams, typed.member)
        )
        blocks = approvals_blocks(views, hashes, app_url=app_url)
        return {"blocks": blocks, "text": "Your pending approvals"}
    if sub == "subscribe" and len(words) == 2:
        return {"text": await _subscribe(pool, teams, typed, words[1], subscribe_anyone)}
    if sub == "unsubscribe":
        return {"text": await _unsubscribe(pool, teams, typed, subscribe_anyone)}
    return {"text": HELP_TEXT}


_SUBSCRIBED = {
    Subscription.NOT_A_WORKSPACE: (
        "That is not a workspace name: use letters, digits, `.`, `_` and `-`."
    ),
    Subscription.NOT_A_CHANNEL: (
        "Run `/taskjuice subscribe` in the channel that should receive the alerts."
    ),
    Subscription.OTHER_TEAM: "That workspace's alerts go to another Slack workspace.",
}


_REFUSED = {
    RouteRight.OTHER_TEAM: (
        "Only the Slack workspace connected to that TaskJuice workspace can route its alerts."
    ),
    RouteRight.NOT_ADMIN: (
        "Only an admin or owner of this Slack workspace, or the person who installed "
        "TaskJuice, can route alerts."
    ),
    RouteRight.UNKNOWN: (
        "Slack could not confirm that you may route alerts here; try again in a minute."
    ),
}


async def _subscribe(
    pool: asyncpg.Pool, teams: SlackTeams, typed: Command, workspace: str, anyone: bool
) -> str:
    if not re.fullmatch(WORKSPACE_PATTERN, workspace):
        return _SUBSCRIBED[Subscription.NOT_A_WORKSPACE]
    right = await may_route(teams, workspace, typed.member, anyone=anyone)
    if right is not RouteRight.ALLOWED:
        return _REFUSED[right]
    done = await alerts.subscribe_slack_channel(
        pool, workspace, channel=typed.channel, team=typed.team
    )
    if done is Subscription.SUBSCRIBED:
        return f"This channel now receives the alerts of *{workspace}*."
    return _SUBSCRIBED[done]


async def _unsubscribe(pool: asyncpg.Pool, teams: SlackTeams, typed: Command, anyone: bool) -> str:
    routed = await alerts.workspaces_routed_to(pool, typed.channel)
    allowed: list[str] = []
    refusal: RouteRight | None = None
    for workspace in routed:
        right = await may_route(teams, workspace, typed.member, anyone=anyone)
        if right is RouteRight.ALLOWED:
            allowed.append(workspace)
        elif refusal is None or right is not RouteRight.OTHER_TEAM:
            refusal = right
    if routed and not allowed:
        assert refusal is not None
        return _REFUSED[refusal]
    names = await alerts.unsubscribe_slack_channel(pool, typed.channel, allowed)
    if not names:
        return "This channel receives no TaskJuice alerts."
    return (
        "This channel no longer receives the alerts of " + ", ".join(f"*{n}*" for n in names) + "."
    )


async def home_opened(pool: asyncpg.Pool, team: str, user: str) -> None:
    """Someone opened the App Home: remember it (so task changes refresh it) and refresh it."""
    async with pool.acquire() as conn, conn.transaction():
        if team:
            await slack_store.home_seen(conn, team, user)
        await queue_home(conn, user)


# --- the app uninstalled, its tokens revoked -------------------------------------------------

REVOKING_EVENTS = ("app_uninstalled", "tokens_revoked")


async def installation_revoked(
    teams: SlackTeams, event: dict[str, Any], body: dict[str, Any]
) -> bool:
    """`app_uninstalled`, or `tokens_revoked` naming bot tokens: the team's installation is
    revoked (`SlackTeams.revoke`, whose hooks give up its queued Slack work and mail its
    pending approvals; `slack.uninstalled` is queued once however often Slack says so).
    A `tokens_revoked` for user tokens only changes nothing. False when nothing was revoked."""
    kind = event.get("type")
    if kind not in REVOKING_EVENTS:
        return False
    if kind == "tokens_revoked":
        tokens = event.get("tokens")
        bots = tokens.get("bot") if isinstance(tokens, dict) else None
        if not bots:
            return False
    team = body.get("team_id")
    enterprise = body.get("enterprise_id")
    team_id = team if isinstance(team, str) and team else None
    enterprise_id = enterprise if isinstance(enterprise, str) and enterprise else None
    if team_id is None and enterprise_id is None:
        return False
    if body.get("is_enterprise_install") is True:
        team_id = None  # the organisation's install, not one of its teams
    await teams.revoke(team_id, enterprise_id, str(kind))
    return True
