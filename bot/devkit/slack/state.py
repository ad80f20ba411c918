"""The double's state: its teams, tokens, messages, views and calls, and its clock.

The fields are `SlackApiDouble`'s constructor (documented there); the layers above this one
(`workspaces`, `rate_limiting`, `installs`, `oauth`, `methods`, `socket_mode`, `server`) act on
them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.devkit.slack.calls import Call, Fault
from bot.devkit.slack.limits import PUBLISHED, SlidingWindows, as_limit
from bot.devkit.slack.teams import Grant, Served, SlackUser, Team, Token

__all__ = ["DoubleState"]


@dataclass
class DoubleState:
    """What the double knows and has seen; the default team is built from the team fields."""

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
    _served: Served | None = None

    def __post_init__(self) -> None:
        self.limits = PUBLISHED | {m: as_limit(v) for m, v in self.limits.items()}
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

    # --- calls and faults ----------------------------------------------------------------

    def fail(self, method: str, fault: Fault) -> None:
        self.faults[method].append(fault)

    def calls_to(self, method: str, team: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (team is None or c.team == team)]

    def all_messages(self) -> list[dict[str, Any]]:
        return [m for msgs in self.messages.values() for m in msgs]

    def messages_of(self, team_id: str) -> list[dict[str, Any]]:
        """The messages the app posted while serving one team (its channels, DMs, shared ones)."""
        return [m for m in self.all_messages() if m.get("team") == team_id]

    # --- the clock -----------------------------------------------------------------------

    def now(self) -> float:
        """The double's wall clock (moved on by `advance`)."""
        return time.time() + self._skew

    def _monotonic(self) -> float:
        return time.monotonic() + self._skew

    def advance(self, seconds: float) -> None:
        """Move the double's clock on: tokens expire, codes age and rate windows slide."""
        self._skew += seconds

    def _ts(self) -> str:
        return f"{int(self.now())}.{next(self._clock):06d}"
