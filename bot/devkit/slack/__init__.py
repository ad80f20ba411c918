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
sliding windows (see `limits`). The legacy default team (the one `add_user`, `add_channel` and
`token` refer to) is not rate limited unless asked (`rate_limits=True`); teams added with
`add_team` are.

Modules, from the bottom up: `teams`, `limits` and `calls` (records: the Slack world, the
published limits, calls and faults); `state` (the double's fields and clock); `workspaces`
(teams, people, channels, who sees what); `rate_limiting`; `installs` (tokens, uninstalls,
`auth.*`, install events); `oauth`; `methods` (`chat.*`, `users.*`, `conversations.*`,
`views.*`); `socket_mode`; `server` (the aiohttp app and dispatch, and `SlackApiDouble`).
"""

from __future__ import annotations

from bot.devkit.slack.calls import Call, Fault
from bot.devkit.slack.installs import SignedRequest
from bot.devkit.slack.limits import Limit
from bot.devkit.slack.server import SlackApiDouble
from bot.devkit.slack.teams import SlackUser, Team, Token

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
