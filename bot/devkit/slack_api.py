"""A Slack Web API double: a real HTTP server that slack-sdk's client talks to.

Used by the tests and by `taskjuice-bot dev`. It keeps a small workspace (users, channels,
DMs), the messages posted and updated in it, ephemeral messages and views, records every call,
and can be told to fail: an API error, HTTP 429 with Retry-After, a 5xx, or accept-then-drop
(the call takes effect but the connection is closed before the answer). It can also enforce
Slack's pace of about one message per second per channel.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

__all__ = ["Call", "Fault", "SlackApiDouble", "SlackUser"]

_JSON_FIELDS = ("blocks", "attachments", "metadata", "view", "users")


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackUser:
    """A member of the double's workspace."""

    id: str
    name: str
    email: str | None = None
    tz: str = "Europe/Berlin"
    tz_offset: int = 3600


@dataclass(slots=True)
class Call:
    """One Web API call as the double received it."""

    method: str
    args: dict[str, Any]
    token: str | None
    answer: str = "ok"


@dataclass(slots=True)
class Fault:
    """How the next call(s) of a method fail."""

    kind: str  # "error" | "ratelimited" | "http" | "drop"
    times: int = 1
    error: str = "internal_error"
    status: int = 500
    retry_after: int = 1


@dataclass
class SlackApiDouble:
    """The double's state and its aiohttp server."""

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
    _clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _last_post: dict[str, float] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    socket_acks: dict[str, Any] = field(default_factory=dict)
    _socket_queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _socket_connected: asyncio.Event = field(default_factory=asyncio.Event)
    _sockets: set[web.WebSocketResponse] = field(default_factory=set)
    _socket_refused: bool = False

    # --- the workspace -------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, email: str | None = None) -> SlackUser:
        user = SlackUser(id=user_id, name=name, email=email)
        self.users[user_id] = user
        return user

    def add_channel(self, channel_id: str, name: str) -> None:
        self.channels[channel_id] = name

    def dm_channel(self, user_id: str) -> str:
        return "D" + user_id[1:]

    def fail(self, method: str, fault: Fault) -> None:
        self.faults[method].append(fault)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def all_messages(self) -> list[dict[str, Any]]:
        return [m for msgs in self.messages.values() for m in msgs]

    # --- the server ----------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound}/api/"
        return self.url

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

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") or args.pop("token", None)
        call = Call(method=method, args=args, token=token)
        self.calls.append(call)
        expected = self.app_token if method == "apps.connections.open" else self.token
        if token != expected:
            call.answer = "invalid_auth"
            return web.json_response({"ok": False, "error": "invalid_auth"})
        faults = self.faults[method]
        fault = faults[0] if faults else None
        if fault is not None:
            fault.times -= 1
            if fault.times <= 0:
                faults.pop(0)
            call.answer = fault.kind
            if fault.kind == "ratelimited":
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(fault.retry_after)},
                )
            if fault.kind == "http":
                return web.Response(status=fault.status, text="upstream trouble")
            if fault.kind == "error":
                return web.json_response({"ok": False, "error": fault.error})
        paced = self._paced(method, args)
        if paced is not None:
            call.answer = "ratelimited"
            return paced
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            call.answer = "unknown_method"
            return web.json_response({"ok": False, "error": "unknown_method"})
        answer = handler(args)
        self.changed.set()
        if fault is not None and fault.kind == "drop":
            # The call took effect; the caller never learns it.
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        if not answer.get("ok", True):
            call.answer = answer["error"]
        return web.json_response({"ok": True} | answer)

    def _paced(self, method: str, args: dict[str, Any]) -> web.Response | None:
        if self.pace_per_channel is None or method not in ("chat.postMessage",):
            return None
        channel = str(args.get("channel"))
        now = time.monotonic()
        last = self._last_post.get(channel)
        if last is not None and now - last < 1.0 / self.pace_per_channel:
            wait = max(1, round(1.0 / self.pace_per_channel - (now - last)))
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(wait)},
            )
        self._last_post[channel] = now
        return None

    # --- methods -------------------------------------------------------------------------

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._clock):06d}"

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://acme.slack.test/",
            "team": self.team_name,
            "user": "taskjuice",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
        }

    def _user_json(self, user: SlackUser) -> dict[str, Any]:
        return {
            "id": user.id,
            "team_id": self.team_id,
            "name": user.name,
            "real_name": user.name,
            "tz": user.tz,
            "tz_offset": user.tz_offset,
            "profile": {"email": user.email, "real_name": user.name, "display_name": user.name},
        }

    def _users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        wanted = str(args.get("email", "")).lower()
        for user in self.users.values():
            if user.email and user.email.lower() == wanted:
                return {"user": self._user_json(user)}
        return {"ok": False, "error": "users_not_found"}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        return {"user": self._user_json(user)} if user else {"ok": False, "error": "user_not_found"}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args.get("users", "")).split(",")
        if len(users) != 1 or users[0] not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"channel": {"id": self.dm_channel(users[0])}}

    def _known_channel(self, channel: str) -> bool:
        return channel in self.channels or (
            channel.startswith("D") and ("U" + channel[1:]) in self.users
        )

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        if not self._known_channel(channel):
            return {"ok": False, "error": "channel_not_found"}
        message = {
            "ts": self._ts(),
            "channel": channel,
            "text": args.get("text"),
            "blocks": args.get("blocks") or [],
            "attachments": args.get("attachments") or [],
            "metadata": args.get("metadata"),
            "thread_ts": args.get("thread_ts"),
            "user": self.bot_user_id,
            "unfurl_links": args.get("unfurl_links"),
            "unfurl_media": args.get("unfurl_media"),
            "edited": 0,
        }
        self.messages[channel].append(message)
        return {"channel": channel, "ts": message["ts"], "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
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
        self.ephemeral.append(
            {
                "channel": args.get("channel"),
                "user": args.get("user"),
                "text": args.get("text"),
                "blocks": args.get("blocks") or [],
            }
        )
        return {"message_ts": self._ts()}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        found = list(reversed(self.messages.get(channel, [])))
        limit = int(args.get("limit", 100))
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
        view = dict(args.get("view") or {})
        self.home[str(args.get("user_id"))] = view
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
