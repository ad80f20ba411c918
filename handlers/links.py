"""Magic-link pages at /d/{token}: GET and HEAD show, only the form's POST decides."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bot.domain import Reversibility
from bot.errors import UNAVAILABLE
from bot.links.pages import LinkPage, LinkState, decide_by_link, open_link
from bot.links.tokens import LinkSigner
from bot.runtime.keys import METRICS, POOL, SETTINGS
from bot.wording import PAGE, badge, requester

__all__ = ["add_routes"]

SIGNER = web.AppKey("link_signer", LinkSigner)
PAGES = web.AppKey("pages", Environment)

# Every page: no referrer (the URL holds the token), no caching, no framing, no scripts.
_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
_TITLES = {
    LinkState.INVALID: ("Link not valid", "Not valid"),
    LinkState.FINISHED: ("Already decided", "Request closed"),
    LinkState.SUPERSEDED: ("Link superseded", "Link no longer valid"),
    LinkState.USED: ("Link already used", "Already used"),
    LinkState.REFUSED: ("Not recorded", "Not recorded"),
    LinkState.DONE: ("Thank you", "Recorded"),
}
_MAX_FORM = 8192

Page = Callable[[web.Request], Awaitable[web.Response]]


def add_routes(app: web.Application) -> None:
    settings = app[SETTINGS]
    app[SIGNER] = LinkSigner(settings.link_secrets)
    app[PAGES] = Environment(
        loader=FileSystemLoader(str(resources.files("templates"))),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=True),
    )
    app.router.add_get("/d/{token}", show)  # aiohttp answers HEAD with the same handler
    app.router.add_post("/d/{token}", submit)


def _render(request: web.Request, name: str, status: int, **values: Any) -> web.Response:
    body = request.app[PAGES].get_template(name).render(**values)
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(_HEADERS)
    return response


def _page(
    request: web.Request, page: LinkPage, *, error: str | None = None, intent: str | None = None
) -> web.Response:
    task = page.task
    settings = request.app[SETTINGS]
    if page.state is LinkState.READY:
        assert task is not None and page.link_id is not None
        signer = request.app[SIGNER]
        return _render(
            request,
            "pages/confirm.html.j2",
            422 if error else 200,
            title="Review and decide",
            task=task,
            acting_as=page.acting_as,
            details=list(task.details.items()),
            requested_by=requester(task.requested_by, PAGE),
            expires=PAGE.time(task.expires_at),
            badge=badge(task.reversibility, PAGE),
            irreversible=task.reversibility is Reversibility.IRREVERSIBLE,
            word=signer.confirm_word(page.link_id),
            nonce=signer.nonce(page.link_id),
            action=request.path,
            error=error,
            intent=intent,
            approve_effect="The workflow continues with this step.",
        )
    title, eyebrow = _TITLES[page.state]
    inbox = f"{settings.taskjuice_app_url}/{task.workspace}/monitoring/approvals" if task else None
    return _render(
        request,
        "pages/message.html.j2",
        page.status,
        title=title,
        eyebrow=eyebrow,
        lines=page.lines,
        inbox_url=inbox,
    )


def _database_away_page(handler: Page) -> Page:
    """The database away: a page that says so, and how to find out what happened."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except UNAVAILABLE:
            return _render(
                request,
                "pages/message.html.j2",
                503,
                title="Try again in a minute",
                eyebrow="Temporarily unavailable",
                lines=[
                    "We could not reach our records just now.",
                    "If you pressed Approve or Deny, open the link again in a minute: "
                    "it will show whether your decision was recorded.",
                ],
                inbox_url=None,
            )

    return guarded


@_database_away_page
async def show(request: web.Request) -> web.Response:
    """The confirmation page (or why the link no longer works). Never decides."""
    page = await open_link(
        request.config_dict[POOL], request.app[SIGNER], request.match_info["token"]
    )
    intent = request.query.get("do")
    return _page(request, page, intent=intent if intent in ("approve", "deny") else None)


def _same_origin(request: web.Request) -> bool:
    """A cross-site POST is refused. With `Referrer-Policy: no-referrer` browsers send
    `Origin: null` even for same-origin forms, so null is accepted; `Sec-Fetch-Site`, sent by
    current browsers whatever the policy, must then say same-origin."""
    ours = urlsplit(request.app[SETTINGS].public_url)
    origin = request.headers.get("Origin")
    if origin not in (None, "null", f"{ours.scheme}://{ours.netloc}"):
        return False
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


@_database_away_page
async def submit(request: web.Request) -> web.Response:
    """Decide from the confirmation form."""
    if not _same_origin(request):
        return _render(
            request,
            "pages/message.html.j2",
            403,
            title="Not allowed",
            eyebrow="Refused",
            lines=["This form can only be sent from its own page."],
            inbox_url=None,
        )
    if request.content_length is not None and request.content_length > _MAX_FORM:
        return _render(
            request,
            "pages/message.html.j2",
            413,
            title="Too large",
            eyebrow="Refused",
            lines=["The form is too large."],
            inbox_url=None,
        )
    try:
        form = {k: str(v) for k, v in (await request.post()).items() if isinstance(v, str)}
    except ValueError:
        form = {}
    client = {"user_agent": request.headers.get("User-Agent", "")[:300], "ip": request.remote}
    page, error = await decide_by_link(
        request.config_dict[POOL],
        request.app[SIGNER],
        request.match_info["token"],
        form,
        client=client,
        metrics=request.config_dict[METRICS],
    )
    return _page(request, page, error=error, intent=form.get("decision"))
