"""The console's pages: the whole console at /dev, and each panel alone (/dev/panel/<name>,
which the console's script fetches every second), with the state they render: the Slack
double's conversations, modals and App Home as each person sees them, the caught mail, the
callbacks the platform received, the workspaces' Slack connections, and the recent requests
with whom they reached and how."""

from __future__ import annotations

import asyncio
import html
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from bot.devkit.mrkdwn import to_html
from bot.runtime.devmode import PEOPLE, DevWorld
from handlers.devconsole.common import WORLD, api, team_of_user, user_name

__all__ = ["add_routes"]

_PAGES = web.AppKey("dev_pages", Environment)


def add_routes(app: web.Application, world: DevWorld) -> None:
    env = Environment(
        loader=FileSystemLoader(str(resources.files("templates"))),
        autoescape=select_autoescape(default=True),
    )
    # to_html() escapes everything it does not turn into markup itself.
    env.filters["mrkdwn"] = lambda text: Markup(  # noqa: S704
        to_html(str(text or ""), user_name(world))
    )

    env.filters["clock"] = _clock
    env.filters["person"] = user_name(world)
    env.filters["reason"] = _reason
    env.globals["qs"] = lambda query, **changes: urlencode({**query, **changes})
    app[_PAGES] = env
    app.router.add_get("/dev", console)
    app.router.add_get("/dev/panel/{name}", panel)
    app.router.add_get("/dev/app/{path:.*}", platform_app)


def _opened_for(view: dict[str, Any]) -> str:
    """Whose screen a modal is on: the console's trigger ids are "<user>.<n>". (The bot opens
    the modal after it has answered the click, so the click cannot note it on the view.)"""
    return str(view.get("trigger_id", "")).rsplit(".", 1)[0]


_ROLES = {person.id: person.role for person in PEOPLE}


def _people(world: DevWorld) -> list[tuple[str, list[tuple[str, str]]]]:
    """The Acting-as picker: every team's people, admins marked."""
    return [
        (
            f"{team.name} ({team.id})",
            [
                (
                    u.id,
                    u.name
                    + (" · admin" if u.is_admin else "")
                    + (f" ({_ROLES[u.id]})" if u.id in _ROLES else ""),
                )
                for u in team.users.values()
            ],
        )
        for team in world.slack.teams.values()
    ]


def _conversations(world: DevWorld) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every team's channels, the channels shared with it (Slack Connect) and its DMs."""
    groups = []
    for team in world.slack.teams.values():
        items = [(cid, f"#{name}") for cid, name in team.channels.items()]
        for cid, guests in world.slack.shared.items():
            if cid in team.channels:
                items = [(c, f"{label} · shared") if c == cid else (c, label) for c, label in items]
            elif team.id in guests:
                owner = next(t for t in world.slack.teams.values() if cid in t.channels)
                items.append((cid, f"#{owner.channels[cid]} · {owner.name}, shared"))
        items += [(world.slack.dm_channel(u.id), f"DM · {u.name}") for u in team.users.values()]
        groups.append((f"{team.name} ({team.id})", items))
    return groups


def _state(request: web.Request) -> dict[str, Any]:
    world = request.app[WORLD]
    user = request.query.get("user", PEOPLE[0].id)
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
        "people": _people(world),
        "user": user,
        "user_team": world.slack.teams[team_of_user(world, user)].name,
        "conversations": _conversations(world),
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
        "workspaces": [(ws, None) for ws in world.workspaces],
        "requests": [],
        "query": dict(request.query),
    }


async def _connections(request: web.Request) -> list[tuple[str, dict[str, Any] | None]]:
    """Each workspace the console knows, with what the API says of it (as the platform
    would read it); None where the API answered otherwise."""
    shown = []
    for workspace in request.app[WORLD].workspaces:
        status, view = await api(request, "GET", f"/workspaces/{quote(workspace, safe='')}")
        shown.append((workspace, view if status == 200 else None))
    return shown


_REQUESTS_SHOWN = 8


async def _requests(request: web.Request) -> list[dict[str, Any]]:
    """The newest requests, each as `GET /approvals/{id}` shows it (with `reach`: whom of its
    current tier it reached, by which channel, and why a channel failed)."""
    status, page = await api(request, "GET", f"/approvals?limit={_REQUESTS_SHOWN}")
    if status != 200:
        return []
    shown = await asyncio.gather(
        *(api(request, "GET", f"/approvals/{quote(item['id'], safe='')}") for item in page["items"])
    )
    return [view for status, view in shown if status == 200]


def _clock(at: str | None) -> str:
    """An API timestamp as the hour and minute (UTC), as a console line shows it."""
    return datetime.fromisoformat(at.replace("Z", "+00:00")).strftime("%H:%M") if at else ""


def _reason(error: str | None, channel: str) -> str:
    """A channel's last error without the channel's own prefix ("slack: user_not_found")."""
    text = error or ""
    return text.removeprefix(f"{channel}: ")


def _render(request: web.Request, name: str, **values: Any) -> web.Response:
    text = request.app[_PAGES].get_template(name).render(**values)
    return web.Response(
        text=text,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def console(request: web.Request) -> web.Response:
    state = _state(request) | {
        "workspaces": await _connections(request),
        "requests": await _requests(request),
    }
    return _render(request, "dev/console.html.j2", **state)


async def panel(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ("slack", "mail", "platform"):
        raise web.HTTPNotFound()
    state = _state(request)
    if name == "platform":
        state["workspaces"] = await _connections(request)
        state["requests"] = await _requests(request)
    return _render(request, f"dev/{name}.html.j2", **state)


async def platform_app(request: web.Request) -> web.Response:
    """Where the TaskJuice app's links (inbox, billing, reconnect) lead in dev mode."""
    return web.Response(
        text=f"The TaskJuice app would open /{request.match_info['path']} here.",
        content_type="text/plain",
    )
