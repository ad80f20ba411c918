"""What is done in the dev console, forwarded to the bot as the outside world would send it.

Buttons, modals, commands and the App Home are sent to the bot's own /slack/events as Slack
sends them, built and signed by bot/devkit/slack_requests.py: `team` is the team the click
happened in (the conversation's), `user.team_id` the clicker's own, so a click by someone of
another team (a Slack Connect guest) meets the bot's tenant rules as in real Slack. Replies go
through the bot's inbound SMTP listener; requests, events and Slack connections go through the
API (Connect Slack opens an install link and walks the double's consent page).
"""

from __future__ import annotations

import itertools
import json
import time
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import aiosmtplib
from aiohttp import web

from bot.devkit.slack_requests import SlackRequests, button
from bot.runtime.devmode import SIGNING_SECRET, TEAMS, DevTeam, DevWorld
from bot.runtime.keys import SETTINGS
from handlers.devconsole.common import WORLD, api, team_of_channel, team_of_user, user_name

__all__ = ["add_routes"]

_triggers = itertools.count(1)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/dev/slack/click", slack_click)
    app.router.add_post("/dev/slack/submit", slack_submit)
    app.router.add_post("/dev/slack/command", slack_command)
    app.router.add_post("/dev/slack/home", slack_home)
    app.router.add_post("/dev/mail/reply", mail_reply)
    app.router.add_post("/dev/platform/approval", platform_approval)
    app.router.add_post("/dev/platform/event", platform_event)
    app.router.add_post("/dev/platform/connect", platform_connect)
    app.router.add_post("/dev/platform/disconnect", platform_disconnect)


def _back(request: web.Request, **query: str) -> web.HTTPSeeOther:
    merged = {k: v for k, v in request.query.items()} | query
    return web.HTTPSeeOther("/dev?" + urlencode(merged))


def _slack(world: DevWorld, team_id: str) -> SlackRequests:
    """Slack's side of one dev team: what it sends, signed as Slack signs."""
    return SlackRequests(
        SIGNING_SECRET,
        team_id=team_id,
        team_domain=world.slack.teams[team_id].domain,
        app_id="A0TASKJDEV",
        token="dev",  # noqa: S106 (Slack's deprecated verification token; the bot ignores it)
    )


def _as_member_of(payload: dict[str, Any], team_id: str) -> dict[str, Any]:
    """The actor keeps their own team, whatever team the interaction happened in."""
    payload["user"]["team_id"] = team_id
    return payload


async def _to_bot(request: web.Request, sent: tuple[bytes, dict[str, str]]) -> tuple[int, str]:
    """POST a signed request to the bot's own /slack/events."""
    body, headers = sent
    settings = request.app[SETTINGS]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{settings.port}/slack/events", data=body, headers=headers
        ) as response,
    ):
        return response.status, await response.text()


async def slack_click(request: web.Request) -> web.StreamResponse:
    world = request.app[WORLD]
    form = await request.post()
    user, action_id = str(form["user"]), str(form["action_id"])
    home = form.get("where") == "home"
    if home:
        blocks = (world.slack.home.get(user) or {}).get("blocks", [])
        message: dict[str, Any] = {"ts": "", "channel": "", "text": "", "blocks": blocks}
    else:
        channel, ts = str(form["channel"]), str(form["ts"])
        message = next((m for m in world.slack.messages.get(channel, []) if m["ts"] == ts), {})
        blocks = message.get("blocks", []) + [
            b for a in message.get("attachments", []) for b in a.get("blocks", [])
        ]
    wanted = form.get("value")
    try:
        element = button({"blocks": blocks}, action_id, None if wanted is None else str(wanted))
    except StopIteration:
        return _back(request)
    own = team_of_user(world, user)
    where = own if home else team_of_channel(world, str(form["channel"]), user)
    slack = _slack(world, where)
    trigger = f"{user}.{next(_triggers)}"
    world.triggers[trigger] = where
    payload = slack.block_actions_payload(
        user=user,
        username=user_name(world)(user),
        action_id=action_id,
        value=element.get("value", ""),
        message=None if home else message,
        view_id="home",
        trigger_id=trigger,
    )
    await _to_bot(request, slack.interaction(_as_member_of(payload, own)))
    return _back(request)


async def slack_submit(request: web.Request) -> web.StreamResponse:
    world = request.app[WORLD]
    form = await request.post()
    user, view_id = str(form["user"]), str(form["view_id"])
    view = next((v for v in world.slack.views if v.get("id") == view_id), None)
    if view is None:
        return _back(request)
    if form.get("action") == "close":
        view["_closed"] = True
        return _back(request)
    clean = {k: v for k, v in view.items() if not k.startswith("_")}
    own = team_of_user(world, user)
    slack = _slack(world, world.triggers.get(str(view.get("trigger_id")), own))
    payload = slack.view_submission_payload(
        user=user,
        username=user_name(world)(user),
        view=clean,
        reason=str(form.get("reason", "")) or None,
        trigger_id=f"{user}.{next(_triggers)}",
    )
    _, body = await _to_bot(request, slack.interaction(_as_member_of(payload, own)))
    answer = json.loads(body) if body.strip().startswith("{") else {}
    if answer.get("response_action") == "update":
        view.update(answer["view"])
    else:
        view["_closed"] = True
    return _back(request)


async def slack_command(request: web.Request) -> web.StreamResponse:
    world = request.app[WORLD]
    form = await request.post()
    user, channel = str(form["user"]), str(form.get("channel", "C0APPROV1"))
    _, answer = await _to_bot(
        request,
        _slack(world, team_of_user(world, user)).slash_command(
            user=user,
            channel=channel,
            text=str(form.get("text", "")),
            trigger_id=f"{user}.{next(_triggers)}",
        ),
    )
    reply = json.loads(answer) if answer.strip().startswith("{") else {"text": answer}
    world.slack.ephemeral.append(
        {
            "channel": channel,
            "user": user,
            "text": reply.get("text"),
            "blocks": reply.get("blocks") or [],
        }
    )
    return _back(request)


async def slack_home(request: web.Request) -> web.StreamResponse:
    world = request.app[WORLD]
    user = str((await request.post())["user"])
    slack = _slack(world, team_of_user(world, user))
    await _to_bot(request, slack.app_home_opened(user, event_id=f"Ev{next(_triggers)}"))
    return _back(request, home="1")


async def mail_reply(request: web.Request) -> web.StreamResponse:
    """Reply to a caught mail as its recipient, through the bot's inbound SMTP listener."""
    world, settings = request.app[WORLD], request.app[SETTINGS]
    form = await request.post()
    index = int(str(form["index"]))
    original = world.mail.messages[index].message
    reply_to = original["Reply-To"]
    if reply_to is None or settings.inbound_smtp_port is None:
        return _back(request)
    sender = world.mail.messages[index].rcpt_tos[0]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = str(reply_to)
    message["Subject"] = f"Re: {original['Subject']}"
    message["Message-ID"] = make_msgid(domain="acme.test")
    message["In-Reply-To"] = str(original["Message-ID"])
    quoted = "\n".join("> " + line for line in world.mail.messages[index].text().splitlines())
    message.set_content(
        f"{form.get('text', '')}\n\nOn {original['Date']} TaskJuice wrote:\n{quoted}\n"
    )
    await aiosmtplib.send(
        message,
        hostname="127.0.0.1",
        port=settings.inbound_smtp_port,
        sender=sender,
        recipients=[reply_to.addresses[0].addr_spec],
    )
    return _back(request)


def _dev_team(world: DevWorld, view: Any) -> DevTeam | None:
    """The dev team a workspace is connected to (by what the API shows of it)."""
    team_id = ((view or {}).get("slack") or {}).get("team_id")
    return next((t for t in TEAMS if t.id == team_id), None)


async def platform_approval(request: web.Request) -> web.StreamResponse:
    world = request.app[WORLD]
    form = await request.post()
    workspace = str(form.get("workspace") or "acme")
    _, view = await api(request, "GET", f"/workspaces/{quote(workspace, safe='')}")
    team = _dev_team(world, view)
    if team is None:
        world.platform.received.append(_note(f"{workspace} is not connected to Slack"))
        return _back(request)
    body: dict[str, Any] = {
        "workspace": workspace,
        "run_id": f"run_dev_{int(time.time() * 1000)}",
        "workflow": {"id": "wf_dev", "name": str(form.get("workflow") or "Dev workflow")},
        "step": "Approval step",
        "summary": str(form.get("summary") or "Sample request"),
        "details": {"amount": "250.00", "currency": "USD"},
        "reversibility": str(form.get("reversibility", "recoverable")),
        "approvers": list(team.approvers),
        "required_approvals": min(int(str(form.get("quorum", "1"))), len(team.approvers)),
        "requested_by": {"email": team.requester},
        "expires_in": int(str(form.get("expires_in") or 600)),
        "timeout_policy": str(form.get("policy", "deny")),
    }
    if body["timeout_policy"] == "escalate":
        body["escalation"] = [{"approvers": [{"email": team.escalation}], "expires_in": 600}]
    status, answer = await api(request, "POST", "/approvals", body)
    if status >= 400:
        world.platform.received.append(_note(f"API said {status}: {answer}"))
    return _back(request)


async def platform_connect(request: web.Request) -> web.StreamResponse:
    """Connect Slack: the platform asks for an install link and the browser opens it (the
    double's consent page, then the bot's page saying whether Slack is connected)."""
    world = request.app[WORLD]
    workspace = str((await request.post()).get("workspace", "")).strip()
    if not workspace:
        world.platform.received.append(_note("Connect Slack: name the workspace first"))
        return _back(request)
    path = f"/workspaces/{quote(workspace, safe='')}/slack/install-link"
    status, answer = await api(request, "POST", path)
    if status != 201:
        world.platform.received.append(_note(f"install link: API said {status}: {answer}"))
        return _back(request)
    if workspace not in world.workspaces:
        world.workspaces.append(workspace)
    return web.HTTPSeeOther(str(answer["url"]))


async def platform_disconnect(request: web.Request) -> web.StreamResponse:
    world = request.app[WORLD]
    workspace = str((await request.post()).get("workspace", ""))
    status, answer = await api(request, "DELETE", f"/workspaces/{quote(workspace, safe='')}/slack")
    if status != 200:
        world.platform.received.append(_note(f"disconnect: API said {status}: {answer}"))
    return _back(request)


def _note(text: str) -> Any:
    from bot.devkit.callback_receiver import ReceivedCallback

    return ReceivedCallback(
        webhook_id="(console)",
        timestamp="",
        body={"note": text},
        verified=False,
        received_at=time.time(),
    )


_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "spend-soft": (
        "/events/spend",
        {"spend": 850, "cap": 1000, "currency": "USD", "period": "2026-11", "stage": "soft"},
    ),
    "spend-hard": (
        "/events/spend",
        {
            "spend": 1000,
            "cap": 1000,
            "currency": "USD",
            "period": "2026-11",
            "stage": "hard",
            "workflow": {"id": "wf_dev", "name": "Dev workflow"},
        },
    ),
    "spend-cleared": (
        "/events/spend",
        {"spend": 0, "cap": 2000, "currency": "USD", "period": "2026-11", "stage": "cleared"},
    ),
    "connection-error": (
        "/events/connection",
        {
            "connection": {"id": "conn_slack", "app": "Slack", "name": "Ops workspace"},
            "state": "error",
            "paused_runs": 3,
        },
    ),
    "connection-active": (
        "/events/connection",
        {
            "connection": {"id": "conn_slack", "app": "Slack", "name": "Ops workspace"},
            "state": "active",
        },
    ),
    "throughput-tripped": (
        "/events/throughput",
        {
            "workflow": {"id": "wf_sync", "name": "CRM sync"},
            "rate": 900,
            "cap": 600,
            "state": "tripped",
        },
    ),
    "throughput-cleared": (
        "/events/throughput",
        {"workflow": {"id": "wf_sync", "name": "CRM sync"}, "state": "cleared"},
    ),
}


async def platform_event(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    kind = str(form.get("kind", ""))
    if kind in _EVENTS:
        path, body = _EVENTS[kind]
        workspace = str(form.get("workspace") or "acme")
        await api(request, "POST", path, {"workspace": workspace} | body)
    return _back(request)
