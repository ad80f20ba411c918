"""The dev console at /dev (dev mode only): Slack, mail and the platform in one browser tab.

Buttons, modals, commands and the App Home are sent to the bot's own /slack/events as Slack
sends them, built and signed by bot/devkit/slack_requests.py; replies go through the bot's
inbound SMTP listener; requests and events go through the API.
"""

from __future__ import annotations

import html
import itertools
import json
import time
from email.message import EmailMessage
from email.utils import make_msgid
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import aiohttp
import aiosmtplib
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from bot.devkit.mrkdwn import to_html
from bot.devkit.slack_requests import SlackRequests, button
from bot.runtime.devmode import API_TOKEN, PEOPLE, SIGNING_SECRET, DevWorld
from bot.runtime.keys import SETTINGS

__all__ = ["WORLD", "add_routes"]

WORLD = web.AppKey("dev_world", DevWorld)
_PAGES = web.AppKey("dev_pages", Environment)
_triggers = itertools.count(1)


def add_routes(app: web.Application, world: DevWorld) -> None:
    app[WORLD] = world
    env = Environment(
        loader=FileSystemLoader(str(resources.files("templates"))),
        autoescape=select_autoescape(default=True),
    )
    # to_html() escapes everything it does not turn into markup itself.
    env.filters["mrkdwn"] = lambda text: Markup(  # noqa: S704
        to_html(str(text or ""), _user_name(world))
    )

    env.globals["qs"] = lambda query, **changes: urlencode({**query, **changes})
    app[_PAGES] = env
    app.router.add_get("/dev", console)
    app.router.add_get("/dev/panel/{name}", panel)
    app.router.add_get("/dev/app/{path:.*}", platform_app)
    app.router.add_post("/dev/slack/click", slack_click)
    app.router.add_post("/dev/slack/submit", slack_submit)
    app.router.add_post("/dev/slack/command", slack_command)
    app.router.add_post("/dev/slack/home", slack_home)
    app.router.add_post("/dev/mail/reply", mail_reply)
    app.router.add_post("/dev/platform/approval", platform_approval)
    app.router.add_post("/dev/platform/event", platform_event)


def _opened_for(view: dict[str, Any]) -> str:
    """Whose screen a modal is on: the console's trigger ids are "<user>.<n>". (The bot opens
    the modal after it has answered the click, so the click cannot note it on the view.)"""
    return str(view.get("trigger_id", "")).rsplit(".", 1)[0]


def _user_name(world: DevWorld) -> Any:
    def name(user_id: str) -> str:
        user = world.slack.users.get(user_id)
        return user.name if user else user_id

    return name


def _state(request: web.Request) -> dict[str, Any]:
    world = request.app[WORLD]
    user = request.query.get("user", PEOPLE[0][0])
    conversations = [(cid, f"#{name}") for cid, name in world.slack.channels.items()]
    conversations += [(world.slack.dm_channel(uid), f"DM · {name}") for uid, name, _, _ in PEOPLE]
    conversation = request.query.get("c", world.slack.dm_channel(user))
    mails = world.mail.messages
    chosen = int(request.query.get("m", len(mails) - 1 if mails else -1))
    mail = mails[chosen] if 0 <= chosen < len(mails) else None
    # Shown in a sandboxed iframe (no scripts); links open in a new tab.
    mail_doc = (
        "<base target=_blank>" + (mail.html() or f"<pre>{html.escape(mail.text())}</pre>")
        if mail
        else ""
    )
    return {
        "people": PEOPLE,
        "user": user,
        "conversations": conversations,
        "conversation": conversation,
        "messages": world.slack.messages.get(conversation, []),
        "ephemeral": [e for e in world.slack.ephemeral if e["user"] == user][-5:],
        "modals": [v for v in world.slack.views if _opened_for(v) == user and not v.get("_closed")],
        "home": world.slack.home.get(user),
        "mails": list(enumerate(mails)),
        "mail": mail,
        "mail_index": chosen,
        "mail_doc": mail_doc,
        "callbacks": list(reversed(world.platform.received))[:30],
        "query": dict(request.query),
    }


def _render(request: web.Request, name: str, **values: Any) -> web.Response:
    text = request.app[_PAGES].get_template(name).render(**values)
    return web.Response(
        text=text,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def console(request: web.Request) -> web.Response:
    return _render(request, "dev/console.html.j2", **_state(request))


async def panel(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ("slack", "mail", "platform"):
        raise web.HTTPNotFound()
    return _render(request, f"dev/{name}.html.j2", **_state(request))


async def platform_app(request: web.Request) -> web.Response:
    """Where the TaskJuice app's links (inbox, billing, reconnect) lead in dev mode."""
    return web.Response(
        text=f"The TaskJuice app would open /{request.match_info['path']} here.",
        content_type="text/plain",
    )


def _back(request: web.Request, **query: str) -> web.HTTPSeeOther:
    merged = {k: v for k, v in request.query.items()} | query
    return web.HTTPSeeOther("/dev?" + urlencode(merged))


def _slack(world: DevWorld) -> SlackRequests:
    """Slack's side of the dev workspace: what it sends, signed as Slack signs."""
    return SlackRequests(
        SIGNING_SECRET,
        team_id=world.slack.team_id,
        app_id="A0TASKJDEV",
        token="dev",  # noqa: S106 (Slack's deprecated verification token; the bot ignores it)
    )


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
    slack = _slack(world)
    payload = slack.block_actions_payload(
        user=user,
        username=_user_name(world)(user),
        action_id=action_id,
        value=element.get("value", ""),
        message=None if home else message,
        view_id="home",
        trigger_id=f"{user}.{next(_triggers)}",
    )
    await _to_bot(request, slack.interaction(payload))
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
    _, body = await _to_bot(
        request,
        _slack(world).view_submission(
            user=user,
            username=_user_name(world)(user),
            view=clean,
            reason=str(form.get("reason", "")) or None,
            trigger_id=f"{user}.{next(_triggers)}",
        ),
    )
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
        _slack(world).slash_command(
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
    await _to_bot(request, _slack(world).app_home_opened(user, event_id=f"Ev{next(_triggers)}"))
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


async def _api(request: web.Request, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    settings = request.app[SETTINGS]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{settings.port}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as response,
    ):
        return response.status, await response.json()


async def platform_approval(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    approvers = [{"email": "dana@acme.test"}, {"slack_user_id": "U0LEE0001"}]
    body: dict[str, Any] = {
        "workspace": "acme",
        "run_id": f"run_dev_{int(time.time() * 1000)}",
        "workflow": {"id": "wf_dev", "name": str(form.get("workflow") or "Dev workflow")},
        "step": "Approval step",
        "summary": str(form.get("summary") or "Sample request"),
        "details": {"amount": "250.00", "currency": "USD"},
        "reversibility": str(form.get("reversibility", "recoverable")),
        "approvers": approvers,
        "required_approvals": int(str(form.get("quorum", "1"))),
        "requested_by": {"email": "ops@acme.test"},
        "expires_in": int(str(form.get("expires_in") or 600)),
        "timeout_policy": str(form.get("policy", "deny")),
    }
    if body["timeout_policy"] == "escalate":
        body["escalation"] = [{"approvers": [{"email": "cfo@acme.test"}], "expires_in": 600}]
    status, answer = await _api(request, "/approvals", body)
    if status >= 400:
        request.app[WORLD].platform.received.append(_note(f"API said {status}: {answer}"))
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
    kind = str((await request.post()).get("kind", ""))
    if kind in _EVENTS:
        path, body = _EVENTS[kind]
        await _api(request, path, {"workspace": "acme"} | body)
    return _back(request)
