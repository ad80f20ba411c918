"""Slack's inbound edge: buttons, the deny modal, `/taskjuice`, App Home (async Bolt).

Every decision is committed through `bot.decisions.decide()` before the request is
acknowledged (Bolt with `process_before_response=True`); Slack updates, explanations and
callbacks go through the outbox, so nothing slow runs before the answer to Slack.

The aiohttp routes and Slack's signature check are in `routes.py`; the Bolt app and its
listeners in `listeners.py`.
"""

from __future__ import annotations

from handlers.slack.listeners import build_bolt
from handlers.slack.routes import SignatureCheck, oauth_route, refusal, slack_route

__all__ = ["SignatureCheck", "build_bolt", "oauth_route", "refusal", "slack_route"]
