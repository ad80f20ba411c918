"""The double's HTTP server: the aiohttp app, and how a Web API call is dispatched.

A call is recorded, authenticated (its token names the team it is served for), then may meet an
injected fault or a rate limit before its method runs; `oauth.v2.access`, the authorize page and
the Socket Mode WebSocket have routes of their own.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bot.devkit.slack.calls import Call, ratelimited, take_fault
from bot.devkit.slack.methods import WebMethods
from bot.devkit.slack.oauth import OAuth
from bot.devkit.slack.socket_mode import SocketMode
from bot.devkit.slack.teams import Served

__all__ = ["SlackApiDouble"]

_JSON_FIELDS = ("blocks", "attachments", "metadata", "view", "users")


class SlackApiDouble(OAuth, WebMethods, SocketMode):
    """The Slack Web API double: its state (`DoubleState`) and its aiohttp server.

    The constructor's team fields describe the default team; `users` and `channels` are that
    team's. `rate_limits`: None (default) enforces the published limits for teams added with
    `add_team` but not for the default team; True for every team; False for none. `limits`
    overrides entries of `bot.devkit.slack.limits.PUBLISHED` (`{"chat.update": (5, 1.0)}`).
    `token_lifetime` (seconds) turns on token rotation for tokens issued by OAuth.
    """

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_get("/oauth/v2/authorize", self._authorize_page)
        app.router.add_post("/oauth/v2/authorize", self._authorize_decide)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound}/api/"
        return self.url

    @property
    def oauth_url(self) -> str:
        """The authorize page base (the bot's `SLACK_OAUTH_URL`)."""
        return self.url.removesuffix("/api/") + "/oauth/v2/authorize"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        raw = await request.read()
        if raw:
            if request.content_type == "application/json":
                args.update(json.loads(raw))
            else:
                args.update(parse_qsl(raw.decode(), keep_blank_values=True))
        for name in _JSON_FIELDS:
            if isinstance(args.get(name), str) and args[name][:1] in "[{":
                args[name] = json.loads(args[name])
        return args

    def _authenticate(self, method: str, token: str | None, args: dict[str, Any]) -> Served | str:
        """Whom the call is served for, or the error Slack would answer."""
        if not token:
            return "not_authed"
        found = self.tokens.get(token)
        if found is None or (found.kind == "app") != (method == "apps.connections.open"):
            return "invalid_auth"
        if found.revoked is not None:
            return found.revoked
        if found.expires_at is not None and self.now() >= found.expires_at:
            return "token_expired"
        if found.team_id is not None:
            team = self.teams[found.team_id]
            return Served(found, team, [team])
        org = [t for t in self.teams.values() if t.enterprise_id == found.enterprise_id]
        wanted = args.get("team_id")
        if wanted:
            chosen = [t for t in org if t.id == wanted]
            if not chosen:
                return "team_access_not_granted"
            return Served(found, chosen[0], chosen)
        channel = args.get("channel")
        owner = self._channel_owner(str(channel)) if channel else None
        if owner is not None and owner in org:
            return Served(found, owner, [owner])
        return Served(found, None, org)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        if method == "oauth.v2.access":
            return self._oauth_access(args, auth)
        token = (auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else "") or args.pop(
            "token", None
        )
        call = Call(method=method, args=args, token=token)
        self.calls.append(call)
        served = self._authenticate(method, token, args)
        if isinstance(served, str):
            call.answer = served
            return web.json_response({"ok": False, "error": served})
        call.team = served.key
        fault, failed = take_fault(self.faults, method, served.key, call)
        if failed is not None:
            return failed
        wait = self._retry_after(method, args, served)
        if wait is not None:
            call.answer = "ratelimited"
            self._refused[(served.key, method)] += 1
            return ratelimited(wait)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            call.answer = "unknown_method"
            return web.json_response({"ok": False, "error": "unknown_method"})
        self._served = served  # handlers are synchronous: this is the call being served
        try:
            answer = handler(args)
        finally:
            self._served = None
        self.changed.set()
        if fault is not None and fault.kind == "drop":
            # The call took effect; the caller never learns it.
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        if not answer.get("ok", True):
            call.answer = answer["error"]
        return web.json_response({"ok": True} | answer)
