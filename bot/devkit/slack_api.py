"""A Slack Web API double: a real HTTP server that slack-sdk's client talks to.

Used by the tests and by `taskjuice-bot dev`. It hosts any number of Slack teams (workspaces,
optionally in an Enterprise Grid organisation), each with its own users, channels, DMs and
messages; every token belongs to one team (or one organisation, for an org-wide install) and a
call is served in that team only. It keeps the messages posted and updated, ephemeral messages
and views, records every call with the team it was served for, and can be told to fail: an API
error, HTTP 429 with Retry-After, a 5xx, or accept-then-drop (the call takes effect but the
connection is closed before the answer).

It plays Slack's OAuth v2 (an authorize page with a consent form, `oauth.v2.access` for codes
and rotating refresh tokens, `auth.revoke`, uninstalls, signed `app_uninstalled` /
`tokens_revoked` events) and enforces Slack's published rate limits per team and method over
sliding windows (see `bot.devkit.slack_limits`). The legacy default team (the one `add_user`,
`add_channel` and `token` refer to) is not rate limited unless asked (`rate_limits=True`);
teams added with `add_team` are.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
import itertools
import json
import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from bot.devkit.slack_limits import (
    CHANNEL_PACE,
    HISTORY_LIMITED,
    HISTORY_LIMITED_MESSAGES,
    POST_MESSAGE,
    PUBLISHED,
    Limit,
    SlidingWindows,
)
from bot.devkit.slack_teams import Grant, SlackUser, Team, Token

__all__ = [
    "Call",
    "Fault",
    "Limit",
    "SignedRequest",
    "SlackApiDouble",
    "SlackUser",
    "Team",
    "Token",
]

_JSON_FIELDS = ("blocks", "attachments", "metadata", "view", "users")
_CODE_LIFETIME = 600.0  # seconds an OAuth code may wait to be exchanged
_DEFAULT_SCOPE = "chat:write,commands,im:write,users:read,users:read.email"


@dataclass(slots=True)
class Call:
    """One Web API call as the double received it, and the team it was served for."""

    method: str
    args: dict[str, Any]
    token: str | None
    answer: str = "ok"
    team: str | None = None
    at: float = field(default_factory=time.monotonic)  # when it arrived (this process's clock)


@dataclass(slots=True)
class Fault:
    """How the next call(s) of a method fail (only calls served for `team`, when given)."""

    kind: str  # "error" | "ratelimited" | "http" | "drop"
    times: int = 1
    error: str = "internal_error"
    status: int = 500
    retry_after: int = 1
    team: str | None = None


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """An Events API request signed as Slack signs it (v0, HMAC-SHA256): POST it to the app."""

    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass(slots=True)
class _Served:
    """Who a call is served for: the token, its team (None: org-wide), the teams it sees."""

    token: Token | None
    team: Team | None
    teams: list[Team]

    @property
    def key(self) -> str:
        if self.team is not None:
            return self.team.id
        if self.token is not None and self.token.enterprise_id:
            return self.token.enterprise_id
        return "-"


@dataclass
class SlackApiDouble:
    """The double's state and its aiohttp server.

    The constructor's team fields describe the default team; `users` and `channels` are that
    team's. `rate_limits`: None (default) enforces the published limits for teams added with
    `add_team` but not for the default team; True for every team; False for none. `limits`
    overrides entries of `bot.devkit.slack_limits.PUBLISHED` (`{"chat.update": (5, 1.0)}`).
    `token_lifetime` (seconds) turns on token rotation for tokens issued by OAuth.
    """

    team_id: str = "T0TASKJ01"
    team_name: str = "Acme"
    bot_user_id: str = "U0BOT0001"
    bot_id: str = "B0BOT0001"
    token: str = "xoxb-test-token"  # noqa: S105 (a fake for tests and dev mode)
    app_token: str = "xapp-test-token"  # noqa: S105 (a fake for tests and dev mode)
    pace_per_channel: float | None = None
    users: dict[str, SlackUser] = field(default_factory=dict)
    channels: dict[str, str] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    ephemeral: list[dict[str, Any]] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)
    home: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=lambda: defaultdict(list))
    url: str = ""
    team_domain: str = "acme"
    enterprise_id: str | None = None
    app_id: str = "A0TASKJ01"
    client_id: str = "111.222"
    client_secret: str = "fake-client-secret"  # noqa: S105 (a fake for tests and dev mode)
    rate_limits: bool | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    history_limited: bool = False
    token_lifetime: float | None = None
    teams: dict[str, Team] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    shared: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    socket_acks: dict[str, Any] = field(default_factory=dict)
    _socket_queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _socket_connected: asyncio.Event = field(default_factory=asyncio.Event)
    _sockets: set[web.WebSocketResponse] = field(default_factory=set)
    _socket_refused: bool = False
    _windows: SlidingWindows = field(default_factory=SlidingWindows)
    _refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    _refresh: dict[str, Token] = field(default_factory=dict)  # unspent refresh token -> token
    _spent: set[str] = field(default_factory=set)
    _org_bots: dict[str, tuple[str, str]] = field(default_factory=dict)
    _skew: float = 0.0
    _served: _Served | None = None

    def __post_init__(self) -> None:
        self.limits = PUBLISHED | {m: _limit(v) for m, v in self.limits.items()}
        default = Team(
            id=self.team_id,
            name=self.team_name,
            domain=self.team_domain,
            enterprise_id=self.enterprise_id,
            bot_user_id=self.bot_user_id,
            bot_id=self.bot_id,
            users=self.users,
            channels=self.channels,
            rate_limits=self.rate_limits,
        )
        self.teams = {default.id: default, **self.teams}
        self.tokens[self.token] = Token(
            value=self.token, team_id=default.id, enterprise_id=default.enterprise_id
        )
        self.tokens[self.app_token] = Token(value=self.app_token, team_id=default.id, kind="app")

    # --- the teams -----------------------------------------------------------------------

    @property
    def default_team(self) -> Team:
        return self.teams[self.team_id]

    def add_team(
        self,
        team_id: str,
        name: str,
        domain: str | None = None,
        *,
        enterprise_id: str | None = None,
        rate_limits: bool | None = None,
    ) -> Team:
        """A further workspace. Its published rate limits are on unless `rate_limits=False`
        (or the double was made with `rate_limits=False`)."""
        suffix = team_id[1:]
        team = Team(
            id=team_id,
            name=name,
            domain=domain or name.lower().replace(" ", "-"),
            enterprise_id=enterprise_id,
            bot_user_id=f"U0BOT{suffix}",
            bot_id=f"B0BOT{suffix}",
            rate_limits=rate_limits,
        )
        self.teams[team_id] = team
        return team

    def _team(self, team_id: str | None) -> Team:
        team = self.teams.get(team_id or self.team_id)
        if team is None:
            raise KeyError(f"no team {team_id!r} in the double")
        return team

    def add_user(
        self,
        user_id: str,
        name: str,
        email: str | None = None,
        *,
        team_id: str | None = None,
        is_admin: bool = False,
        is_owner: bool = False,
        tz: str = "Europe/Berlin",
        tz_offset: int = 3600,
    ) -> SlackUser:
        team = self._team(team_id)
        user = SlackUser(
            id=user_id,
            name=name,
            email=email,
            tz=tz,
            tz_offset=tz_offset,
            team_id=team.id,
            is_admin=is_admin or is_owner,
            is_owner=is_owner,
        )
        team.users[user_id] = user
        return user

    def add_channel(self, channel_id: str, name: str, *, team_id: str | None = None) -> None:
        self._team(team_id).channels[channel_id] = name

    def share_channel(self, channel_id: str, team_id: str) -> None:
        """Slack Connect: the channel (of another team) is also a channel of `team_id`; its
        members from either side can see each other, and keep their own team_id."""
        self._team(team_id)
        if self._channel_owner(channel_id) is None:
            raise KeyError(f"no channel {channel_id!r} in the double")
        self.shared[channel_id].add(team_id)

    def user(self, user_id: str) -> SlackUser | None:
        """A user of any team."""
        for team in self.teams.values():
            if user_id in team.users:
                return team.users[user_id]
        return None

    def dm_channel(self, user_id: str) -> str:
        return "D" + user_id[1:]

    def fail(self, method: str, fault: Fault) -> None:
        self.faults[method].append(fault)

    def calls_to(self, method: str, team: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (team is None or c.team == team)]

    def all_messages(self) -> list[dict[str, Any]]:
        return [m for msgs in self.messages.values() for m in msgs]

    def messages_of(self, team_id: str) -> list[dict[str, Any]]:
        """The messages the app posted while serving one team (its channels, DMs, shared ones)."""
        return [m for m in self.all_messages() if m.get("team") == team_id]

    # --- tokens, installs, uninstalls ----------------------------------------------------

    def now(self) -> float:
        """The double's wall clock (moved on by `advance`)."""
        return time.time() + self._skew

    def _monotonic(self) -> float:
        return time.monotonic() + self._skew

    def advance(self, seconds: float) -> None:
        """Move the double's clock on: tokens expire, codes age and rate windows slide."""
        self._skew += seconds

    def issue_token(
        self,
        team_id: str | None = None,
        *,
        enterprise_id: str | None = None,
        scope: str = _DEFAULT_SCOPE,
        lifetime: float | None = None,
    ) -> Token:
        """A bot token for a team (as an install would give), or for a whole organisation
        (`enterprise_id` without `team_id`). `lifetime` makes it a rotating token."""
        if team_id is None and enterprise_id is None:
            team_id = self.team_id
        team = self._team(team_id) if team_id is not None else None
        org = enterprise_id or (team.enterprise_id if team is not None else None)
        rotating = lifetime is not None
        secret = secrets.token_hex(12)
        where = team_id or org
        token = Token(
            value=f"xoxe.xoxb-1-{where}-{secret}" if rotating else f"xoxb-{where}-{secret}",
            team_id=team_id,
            enterprise_id=org,
            scope=scope,
            expires_at=self.now() + lifetime if lifetime is not None else None,
            lifetime=lifetime,
        )
        if rotating:
            token.refresh_token = f"xoxe-1-{where}-{secrets.token_hex(12)}"
            self._refresh[token.refresh_token] = token
        self.tokens[token.value] = token
        return token

    def revoke(self, token: str, error: str = "token_revoked") -> None:
        """The token (and its refresh token) stops working; later calls answer `error`."""
        found = self.tokens[token]
        found.revoked = error
        if found.refresh_token is not None:
            self._refresh.pop(found.refresh_token, None)

    def uninstall(self, team_id: str) -> list[str]:
        """The app is removed from a team (or, given an enterprise id, from the organisation):
        every bot token of it answers `account_inactive` from now on. The revoked tokens."""
        gone = [
            t.value
            for t in self.tokens.values()
            if t.kind == "bot"
            and t.revoked is None
            and (t.team_id == team_id or (t.team_id is None and t.enterprise_id == team_id))
        ]
        for value in gone:
            self.revoke(value, "account_inactive")
        return gone

    def event_request(
        self,
        team_id: str,
        event_type: str,
        signing_secret: str,
        *,
        timestamp: int | None = None,
        bot_token: bool = True,
        user_ids: tuple[str, ...] = (),
    ) -> SignedRequest:
        """A signed Events API request for `app_uninstalled` or `tokens_revoked` in a team (or
        an organisation, given an enterprise id), as Slack would POST it to the app."""
        org_wide = team_id not in self.teams
        team = None if org_wide else self.teams[team_id]
        enterprise_id = team_id if team is None else team.enterprise_id
        event: dict[str, Any] = {"type": event_type, "event_ts": f"{self.now():.6f}"}
        if event_type == "tokens_revoked":
            bots = [self._bot_identity(team, enterprise_id)[0]] if bot_token else []
            event["tokens"] = {"oauth": list(user_ids), "bot": bots}
        elif event_type != "app_uninstalled":
            raise ValueError(f"not an install event: {event_type!r}")
        payload = {
            "token": "legacy-verification-token",
            "team_id": None if team is None else team.id,
            "enterprise_id": enterprise_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._clock):010d}",
            "event_time": int(self.now()),
            "is_enterprise_install": org_wide,
            "authorizations": [
                {
                    "enterprise_id": enterprise_id,
                    "team_id": None if team is None else team.id,
                    "user_id": self._bot_identity(team, enterprise_id)[0],
                    "is_bot": True,
                    "is_enterprise_install": org_wide,
                }
            ],
        }
        body = json.dumps(payload).encode()
        ts = str(timestamp if timestamp is not None else int(time.time()))
        digest = hmac.new(
            signing_secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
        }
        return SignedRequest(body=body, headers=headers, payload=payload)

    def _bot_identity(self, team: Team | None, enterprise_id: str | None) -> tuple[str, str]:
        if team is not None:
            return team.bot_user_id, team.bot_id
        org = enterprise_id or "-"
        return self._org_bots.setdefault(org, (f"U0BOT{org[1:]}", f"B0BOT{org[1:]}"))

    # --- rate limits ---------------------------------------------------------------------

    def set_limit(self, method: str, count: int | None, seconds: float = 60.0) -> None:
        """At most `count` calls of `method` per team in any window of `seconds` (None: no
        limit). `chat.postMessage` is the per-team cap, `chat.postMessage/channel` the pace."""
        if count is None:
            self.limits.pop(method, None)
        else:
            self.limits[method] = Limit(count, seconds)

    def enforce_rate_limits(self, on: bool = True, team_id: str | None = None) -> None:
        """Switch the published limits on or off for one team, or (no team) for every team."""
        if team_id is not None:
            self._team(team_id).rate_limits = on
            return
        self.rate_limits = on
        for team in self.teams.values():
            team.rate_limits = on

    def rate_limited(self, method: str | None = None, team: str | None = None) -> int:
        """How many calls were answered 429 (by the limits, not by injected faults)."""
        return sum(
            n
            for (t, m), n in self._refused.items()
            if (method is None or m == method) and (team is None or t == team)
        )

    def _enforced(self, served: _Served) -> bool:
        if served.team is not None and served.team.rate_limits is not None:
            return served.team.rate_limits
        if self.rate_limits is not None:
            return self.rate_limits
        return served.team is None or served.team.id != self.team_id

    def _retry_after(self, method: str, args: dict[str, Any], served: _Served) -> int | None:
        """Seconds to wait if the call is over a limit; else admits it into its windows."""
        now = self._monotonic()
        checks: list[tuple[tuple[str, ...], Limit]] = []
        enforced = self._enforced(served)
        limit = self.limits.get(method) if enforced else None
        if method == "conversations.history" and self.history_limited:
            limit = HISTORY_LIMITED
        if limit is not None:
            checks.append(((served.key, method), limit))
        if method == POST_MESSAGE:
            channel = str(args.get("channel"))
            pace = self.limits.get(CHANNEL_PACE) if enforced else None
            if pace is None and self.pace_per_channel is not None:
                pace = Limit(1, 1.0 / self.pace_per_channel)
            if pace is not None:
                checks.append(((served.key, CHANNEL_PACE, channel), pace))
        waits = [w for key, lim in checks if (w := self._windows.wait(key, lim, now)) is not None]
        if waits:
            return max(waits)
        for key, _ in checks:
            self._windows.admit(key, now)
        return None

    # --- the server ----------------------------------------------------------------------

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

    def _authenticate(self, method: str, token: str | None, args: dict[str, Any]) -> _Served | str:
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
            return _Served(found, team, [team])
        org = [t for t in self.teams.values() if t.enterprise_id == found.enterprise_id]
        wanted = args.get("team_id")
        if wanted:
            chosen = [t for t in org if t.id == wanted]
            if not chosen:
                return "team_access_not_granted"
            return _Served(found, chosen[0], chosen)
        channel = args.get("channel")
        owner = self._channel_owner(str(channel)) if channel else None
        if owner is not None and owner in org:
            return _Served(found, owner, [owner])
        return _Served(found, None, org)

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
        fault, failed = self._injected(method, served.key, call)
        if failed is not None:
            return failed
        wait = self._retry_after(method, args, served)
        if wait is not None:
            call.answer = "ratelimited"
            self._refused[(served.key, method)] += 1
            return _ratelimited(wait)
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

    def _injected(
        self, method: str, team: str | None, call: Call
    ) -> tuple[Fault | None, web.Response | None]:
        """The next injected fault for this call, and the answer it gives instead (if any)."""
        faults = self.faults[method]
        fault = next((f for f in faults if f.team is None or f.team == team), None)
        if fault is None:
            return None, None
        fault.times -= 1
        if fault.times <= 0:
            faults.remove(fault)
        call.answer = fault.kind
        if fault.kind == "ratelimited":
            return fault, _ratelimited(fault.retry_after)
        if fault.kind == "http":
            return fault, web.Response(status=fault.status, text="upstream trouble")
        if fault.kind == "error":
            return fault, web.json_response({"ok": False, "error": fault.error})
        return fault, None

    # --- OAuth v2 ------------------------------------------------------------------------

    def approve(
        self,
        team_id: str,
        user_id: str,
        channel_id: str | None = None,
        *,
        scope: str = _DEFAULT_SCOPE,
        redirect_uri: str | None = None,
        enterprise_install: bool = False,
    ) -> str:
        """Consent as `user_id` of `team_id` (picking `channel_id` for an incoming webhook)
        and return the code the app exchanges with `oauth.v2.access`."""
        team = self._team(team_id)
        if user_id not in team.users:
            raise KeyError(f"{user_id!r} is not a member of {team_id!r}")
        if channel_id is not None and channel_id not in team.channels:
            raise KeyError(f"{channel_id!r} is not a channel of {team_id!r}")
        if enterprise_install and team.enterprise_id is None:
            raise ValueError(f"{team_id!r} is not in an Enterprise Grid organisation")
        code = f"{next(self._clock)}.{secrets.token_hex(8)}"
        self.grants[code] = Grant(
            code=code,
            team_id=team_id,
            user_id=user_id,
            scope=scope,
            redirect_uri=redirect_uri,
            channel_id=channel_id,
            enterprise_install=enterprise_install,
            issued_at=self.now(),
        )
        return code

    async def _authorize_page(self, request: web.Request) -> web.Response:
        query = request.query
        problem = self._authorize_problem(query)
        if problem is not None:
            return web.Response(status=400, text=problem)
        scope = query.get("scope", "")
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(query.get(name, ""))}">'
            for name in ("client_id", "scope", "user_scope", "state", "redirect_uri")
        )
        teams = "".join(
            f'<option value="{t.id}">{html.escape(t.name)} ({t.id})</option>'
            for t in self.teams.values()
        )
        people = "".join(
            f'<option value="{u.id}">{html.escape(u.name)} — {html.escape(t.name)}'
            f"{' (admin)' if u.is_admin else ''}</option>"
            for t in self.teams.values()
            for u in t.users.values()
        )
        channels = "".join(
            f'<option value="{cid}">#{html.escape(name)} — {html.escape(t.name)}</option>'
            for t in self.teams.values()
            for cid, name in t.channels.items()
        )
        picker = (
            f'<label>Post to <select name="channel">{channels}</select></label>'
            if "incoming-webhook" in scope.split(",")
            else ""
        )
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Install the app (Slack double)</title></head>
<body><h1>The app is asking for access to a Slack workspace</h1>
<p>Scopes: <code>{html.escape(scope)}</code></p>
<form method="post">{hidden}
<p><label>Workspace <select name="team">{teams}</select></label></p>
<p><label>Installing as <select name="user">{people}</select></label></p>
<p>{picker}</p>
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Cancel</button>
</form></body></html>"""
        return web.Response(text=page, content_type="text/html")

    def _authorize_problem(self, query: Any) -> str | None:
        if query.get("client_id") != self.client_id:
            return "invalid_client_id: this app is not known here"
        redirect = query.get("redirect_uri", "")
        if urlsplit(redirect).scheme not in ("http", "https"):
            return "bad_redirect_uri: give redirect_uri, an http(s) URL"
        return None

    async def _authorize_decide(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {k: str(v) for k, v in form.items()}
        problem = self._authorize_problem(fields)
        if problem is not None:
            return web.Response(status=400, text=problem)
        redirect, state = fields["redirect_uri"], fields.get("state", "")
        if fields.get("decision") == "deny":
            raise web.HTTPFound(_with_query(redirect, error="access_denied", state=state))
        if fields.get("decision") != "allow":
            return web.Response(status=400, text="decision must be allow or deny")
        try:
            code = self.approve(
                fields.get("team", ""),
                fields.get("user", ""),
                fields.get("channel") or None,
                scope=fields.get("scope", ""),
                redirect_uri=redirect,
            )
        except (KeyError, ValueError) as problem_:
            return web.Response(status=400, text=f"cannot install: {problem_}")
        raise web.HTTPFound(_with_query(redirect, code=code, state=state))

    def _client(self, args: dict[str, Any], auth: str) -> tuple[str, str]:
        if auth.startswith("Basic "):
            try:
                pair = base64.b64decode(auth.removeprefix("Basic ")).decode()
            except (binascii.Error, UnicodeDecodeError):
                return "", ""
            client_id, _, secret = pair.partition(":")
            return client_id, secret
        return str(args.get("client_id", "")), str(args.get("client_secret", ""))

    def _oauth_access(self, args: dict[str, Any], auth: str) -> web.Response:
        call = Call(method="oauth.v2.access", args=args, token=None)
        self.calls.append(call)
        _, failed = self._injected("oauth.v2.access", None, call)
        if failed is not None:
            return failed
        answer = self._exchange(args, auth, call)
        if isinstance(answer, int):
            return _ratelimited(answer)
        if not answer.get("ok", True):
            call.answer = answer["error"]
        self.changed.set()
        return web.json_response({"ok": True} | answer)

    def _exchange(self, args: dict[str, Any], auth: str, call: Call) -> dict[str, Any] | int:
        client_id, secret = self._client(args, auth)
        if client_id != self.client_id:
            return {"ok": False, "error": "invalid_client_id"}
        if not hmac.compare_digest(secret, self.client_secret):
            return {"ok": False, "error": "bad_client_secret"}
        if args.get("grant_type") == "refresh_token":
            old = self._refresh.get(str(args.get("refresh_token")))
            if old is None:
                return {"ok": False, "error": "invalid_refresh_token"}
            team = self.teams.get(old.team_id) if old.team_id else None
            served = _Served(old, team, [team] if team else [])
            call.team = served.key
            wait = self._retry_after("oauth.v2.access", args, served)
            if wait is not None:
                self._refused[(served.key, "oauth.v2.access")] += 1
                call.answer = "ratelimited"
                return wait
            del self._refresh[str(args["refresh_token"])]
            lifetime = self.token_lifetime if self.token_lifetime is not None else old.lifetime
            new = self.issue_token(
                old.team_id, enterprise_id=old.enterprise_id, scope=old.scope, lifetime=lifetime
            )
            return self._token_answer(new, team, None, None)
        grant = self.grants.get(str(args.get("code")))
        if grant is None or self.now() - grant.issued_at > _CODE_LIFETIME:
            return {"ok": False, "error": "invalid_code"}
        redirect = args.get("redirect_uri")
        if grant.redirect_uri is not None and redirect and redirect != grant.redirect_uri:
            return {"ok": False, "error": "bad_redirect_uri"}
        team = self.teams[grant.team_id]
        served = _Served(None, team, [team])
        call.team = served.key
        wait = self._retry_after("oauth.v2.access", args, served)
        if wait is not None:
            self._refused[(served.key, "oauth.v2.access")] += 1
            call.answer = "ratelimited"
            return wait
        del self.grants[grant.code]
        org_wide = grant.enterprise_install
        token = self.issue_token(
            None if org_wide else team.id,
            enterprise_id=team.enterprise_id,
            scope=grant.scope,
            lifetime=self.token_lifetime,
        )
        return self._token_answer(token, None if org_wide else team, grant, team)

    def _token_answer(
        self, token: Token, team: Team | None, grant: Grant | None, chosen: Team | None
    ) -> dict[str, Any]:
        bot_user_id, _ = self._bot_identity(team, token.enterprise_id)
        answer: dict[str, Any] = {
            "access_token": token.value,
            "token_type": "bot",
            "scope": token.scope,
            "bot_user_id": bot_user_id,
            "app_id": self.app_id,
            "team": None if team is None else {"id": team.id, "name": team.name},
            "enterprise": None
            if token.enterprise_id is None
            else {"id": token.enterprise_id, "name": f"Org {token.enterprise_id}"},
            "is_enterprise_install": token.is_enterprise_install,
        }
        if grant is not None:
            answer["authed_user"] = {"id": grant.user_id}
        if token.expires_at is not None:
            answer["refresh_token"] = token.refresh_token
            answer["expires_in"] = max(0, round(token.expires_at - self.now()))
        webhook = grant is not None and "incoming-webhook" in grant.scope.split(",")
        if webhook and grant is not None and chosen is not None and grant.channel_id is not None:
            name = chosen.channels[grant.channel_id]
            hook = secrets.token_hex(6)
            answer["incoming_webhook"] = {
                "channel": f"#{name}",
                "channel_id": grant.channel_id,
                "configuration_url": f"https://{chosen.domain}.slack.test/services/B{hook}",
                "url": f"https://hooks.slack.test/services/{chosen.id}/B{hook}/{hook}",
            }
        return answer

    # --- who sees what -------------------------------------------------------------------

    def _now_served(self) -> _Served:
        if self._served is not None:
            return self._served
        team = self.default_team
        return _Served(self.tokens.get(self.token), team, [team])

    def _channel_owner(self, channel: str) -> Team | None:
        for team in self.teams.values():
            if channel in team.channels:
                return team
        if channel.startswith("D"):
            user = self.user("U" + channel[1:])
            if user is not None:
                return self.teams[user.team_id]
        return None

    def _sees_channel(self, served: _Served, channel: str) -> bool:
        owner = self._channel_owner(channel)
        if owner is None:
            return False
        if channel.startswith("D"):
            return owner in served.teams
        guests = self.shared.get(channel, set())
        return owner in served.teams or any(t.id in guests for t in served.teams)

    def _foreign_channel(self, channel: str) -> bool:
        """A channel the double knows, but in a team the call cannot see."""
        served = self._now_served()
        return self._channel_owner(channel) is not None and not self._sees_channel(served, channel)

    def _visible_user(self, user_id: str, *, connect: bool = True) -> SlackUser | None:
        """A member of the served team(s) or, with `connect`, a Slack Connect user met in a
        channel shared with them."""
        served = self._now_served()
        user = self.user(user_id)
        if user is None:
            return None
        if any(user_id in t.users for t in served.teams):
            return user
        if not connect:
            return None
        mine = {t.id for t in served.teams}
        for channel, guests in self.shared.items():
            owner = self._channel_owner(channel)
            sides = guests | ({owner.id} if owner is not None else set())
            if user.team_id in sides and mine & sides:
                return user
        return None

    # --- methods -------------------------------------------------------------------------

    def _ts(self) -> str:
        return f"{int(self.now())}.{next(self._clock):06d}"

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        served = self._now_served()
        team = served.team
        org_wide = served.token is not None and served.token.is_enterprise_install
        enterprise_id = served.token.enterprise_id if served.token is not None else None
        bot_user_id, bot_id = self._bot_identity(None if org_wide else team, enterprise_id)
        answer: dict[str, Any] = {
            "url": f"https://{team.domain if team else 'org'}.slack.test/",
            "team": team.name if team else None,
            "user": "taskjuice",
            "team_id": team.id if team else None,
            "user_id": bot_user_id,
            "bot_id": bot_id,
            "is_enterprise_install": org_wide,
        }
        if enterprise_id is not None:
            answer["enterprise_id"] = enterprise_id
        if served.token is not None and served.token.expires_at is not None:
            answer["expires_in"] = max(0, round(served.token.expires_at - self.now()))
        return answer

    def _auth_revoke(self, args: dict[str, Any]) -> dict[str, Any]:
        served = self._now_served()
        test = str(args.get("test", "")).lower() in ("1", "true")
        if served.token is not None and not test:
            self.revoke(served.token.value)
        return {"revoked": not test}

    def _user_json(self, user: SlackUser) -> dict[str, Any]:
        team = self.teams.get(user.team_id)
        answer: dict[str, Any] = {
            "id": user.id,
            "team_id": user.team_id,
            "name": user.name,
            "real_name": user.name,
            "is_admin": user.is_admin,
            "is_owner": user.is_owner,
            "is_bot": False,
            "deleted": False,
            "tz": user.tz,
            "tz_offset": user.tz_offset,
            "profile": {"email": user.email, "real_name": user.name, "display_name": user.name},
        }
        if team is not None and team.enterprise_id is not None:
            answer["enterprise_user"] = {
                "id": user.id,
                "enterprise_id": team.enterprise_id,
                "teams": [user.team_id],
            }
        return answer

    def _users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        wanted = str(args.get("email", "")).lower()
        for team in self._now_served().teams:
            for user in team.users.values():
                if user.email and user.email.lower() == wanted:
                    return {"user": self._user_json(user)}
        return {"ok": False, "error": "users_not_found"}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._visible_user(str(args.get("user")))
        return {"user": self._user_json(user)} if user else {"ok": False, "error": "user_not_found"}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args.get("users", "")).split(",")
        if len(users) != 1 or self._visible_user(users[0], connect=False) is None:
            return {"ok": False, "error": "user_not_found"}
        return {"channel": {"id": self.dm_channel(users[0])}}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        served = self._now_served()
        if not self._sees_channel(served, channel):
            return {"ok": False, "error": "channel_not_found"}
        bot_user_id, _ = self._bot_identity(served.team, None)
        message = {
            "ts": self._ts(),
            "channel": channel,
            "team": served.key,
            "text": args.get("text"),
            "blocks": args.get("blocks") or [],
            "attachments": args.get("attachments") or [],
            "metadata": args.get("metadata"),
            "thread_ts": args.get("thread_ts"),
            "user": bot_user_id,
            "unfurl_links": args.get("unfurl_links"),
            "unfurl_media": args.get("unfurl_media"),
            "edited": 0,
        }
        self.messages[channel].append(message)
        return {"channel": channel, "ts": message["ts"], "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        if self._foreign_channel(channel):
            return {"ok": False, "error": "channel_not_found"}
        for message in self.messages.get(channel, []):
            if message["ts"] == ts:
                message.update(
                    text=args.get("text"),
                    blocks=args.get("blocks") or [],
                    attachments=args.get("attachments") or [],
                    edited=message["edited"] + 1,
                )
                if args.get("metadata"):
                    message["metadata"] = args["metadata"]
                return {"channel": channel, "ts": ts}
        return {"ok": False, "error": "message_not_found"}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        if self._foreign_channel(channel):
            return {"ok": False, "error": "channel_not_found"}
        if self.user(str(args.get("user"))) and not self._visible_user(str(args.get("user"))):
            return {"ok": False, "error": "user_not_in_channel"}
        self.ephemeral.append(
            {
                "channel": args.get("channel"),
                "user": args.get("user"),
                "text": args.get("text"),
                "blocks": args.get("blocks") or [],
                "team": self._now_served().key,
            }
        )
        return {"message_ts": self._ts()}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        if self._foreign_channel(channel):
            return {"ok": False, "error": "channel_not_found"}
        found = list(reversed(self.messages.get(channel, [])))
        limit = int(args.get("limit", 100))
        if self.history_limited:
            limit = min(limit, HISTORY_LIMITED_MESSAGES)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = [
            {k: v for k, v in m.items() if k != "metadata" or with_metadata} for m in found[:limit]
        ]
        return {"messages": shown, "has_more": len(found) > limit}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        # The trigger is kept so a console can tell whose screen the modal opened on.
        view = dict(args.get("view") or {}) | {
            "id": f"V{next(self._clock):08d}",
            "trigger_id": str(args["trigger_id"]),
        }
        self.views.append(view)
        return {"view": view}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("user_id"))
        if self.user(user_id) is not None and self._visible_user(user_id) is None:
            return {"ok": False, "error": "user_not_found"}
        view = dict(args.get("view") or {})
        self.home[user_id] = view
        return {"view": view}

    # --- Socket Mode ---------------------------------------------------------------------

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.url.replace("http://", "ws://").removesuffix("/api/") + "/socket"}

    async def socket_connected(self) -> None:
        await self._socket_connected.wait()

    async def socket_down(self) -> None:
        """Slack's Socket Mode service goes away: open connections are closed and new ones
        refused until `socket_up()`."""
        self._socket_refused = True
        self._socket_connected.clear()
        for ws in list(self._sockets):
            await ws.close()

    def socket_up(self) -> None:
        self._socket_refused = False

    async def socket_send(self, kind: str, payload: dict[str, Any]) -> str:
        """Deliver an envelope (`interactive`, `slash_commands`, `events_api`) to the app."""
        envelope_id = f"env-{next(self._clock)}"
        await self._socket_queue.put(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": True,
            }
        )
        return envelope_id

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if self._socket_refused:
            return web.Response(status=503, text="socket mode is down")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0TASKJ01"}}
        )
        self._socket_connected.set()

        async def pump() -> None:
            while True:
                await ws.send_json(await self._socket_queue.get())

        sender = asyncio.create_task(pump())
        try:
            async for message in ws:
                if message.type.name == "TEXT":
                    ack = json.loads(message.data)
                    if "envelope_id" in ack:
                        self.socket_acks[ack["envelope_id"]] = ack.get("payload")
                        self.changed.set()
        finally:
            sender.cancel()
            self._sockets.discard(ws)
        return ws


def _limit(value: Any) -> Limit:
    return value if isinstance(value, Limit) else Limit(int(value[0]), float(value[1]))


def _ratelimited(retry_after: int) -> web.Response:
    return web.json_response(
        {"ok": False, "error": "ratelimited"},
        status=429,
        headers={"Retry-After": str(max(1, retry_after))},
    )


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))
