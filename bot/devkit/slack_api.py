"""The Slack Web API double's import point: `SlackApiDouble` and the records it deals in.

The double lives in the package `bot.devkit.slack` (one module per concern); this module keeps
the names tests, the bench and `taskjuice-bot dev` import from it.
"""

from __future__ import annotations

from bot.devkit.slack import (
    Call,
    Fault,
    Limit,
    SignedRequest,
    SlackApiDouble,
    SlackUser,
    Team,
    Token,
)

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
