"""Driving the bot as Slack does, through the dev kit's request builder and signer."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.devkit.slack_api import SlackApiDouble
from bot.devkit.slack_requests import SlackRequests, button, buttons
from bot.devkit.slack_requests import sign as requests_sign

__all__ = [
    "SIGNING_SECRET",
    "SLACK",
    "SlackUserAgent",
    "block_action",
    "button",
    "buttons",
    "sign",
    "text_of",
    "view_submission",
    "workspace",
]

# The signing secret of slack-sdk's own signature tests: obviously not a real one.
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T0TASKJ01"
DANA, LEE, OPS, CFO, MALLORY = "U0DANA001", "U024BE7LH", "U0OPS0001", "U0CFO0001", "U0MAL0001"
ALERTS, APPROVALS = "C0ALERTS1", "C0APPROV1"


def workspace() -> SlackApiDouble:
    """A Slack workspace with the people and channels the tests use."""
    double = SlackApiDouble(team_id=TEAM)
    double.add_user(DANA, "dana", "dana@acme.test")
    double.add_user(LEE, "lee", "lee@acme.test")
    double.add_user(OPS, "ops", "ops@acme.test")
    double.add_user(CFO, "cfo", "cfo@acme.test")
    double.add_user(MALLORY, "mallory", "mallory@acme.test")
    double.add_channel(ALERTS, "alerts")
    double.add_channel(APPROVALS, "approvals")
    return double


SLACK = SlackRequests(SIGNING_SECRET, team_id=TEAM)


def sign(
    body: bytes, *, timestamp: int | None = None, secret: str = SIGNING_SECRET
) -> dict[str, str]:
    return requests_sign(body, secret, timestamp=timestamp)


class SlackUserAgent:
    """Sends signed interactions, commands and events to the bot's /slack/events."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url + "/slack/events"
        self.http = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.http.close()

    async def send(
        self, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        sent = {"Content-Type": content_type, **(headers if headers is not None else sign(body))}
        async with self.http.post(self.url, data=body, headers=sent) as response:
            return response.status, await response.text()

    async def post(self, request: tuple[bytes, dict[str, str]]) -> tuple[int, str]:
        body, headers = request
        async with self.http.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def interact(self, payload: dict[str, Any], **kwargs: Any) -> tuple[int, str]:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.send(body, "application/x-www-form-urlencoded", **kwargs)

    async def click(
        self, message: dict[str, Any], action_id: str, user: str, **kwargs: Any
    ) -> tuple[int, str]:
        """Press a button of a message the double holds, as `user`."""
        element = button(message, action_id)
        return await self.interact(block_action(message, element, user), **kwargs)

    async def command(self, text: str, user: str, channel: str = APPROVALS) -> tuple[int, str]:
        return await self.post(SLACK.slash_command(user=user, channel=channel, text=text))

    async def event(self, event: dict[str, Any]) -> tuple[int, str]:
        return await self.post(SLACK.event_callback(event))


def block_action(message: dict[str, Any], element: dict[str, Any], user: str) -> dict[str, Any]:
    return SLACK.block_actions_payload(
        user=user, action_id=element["action_id"], value=element.get("value", ""), message=message
    )


def view_submission(view: dict[str, Any], user: str, reason: str | None) -> dict[str, Any]:
    return SLACK.view_submission_payload(user=user, view=view, reason=reason)


def text_of(message: dict[str, Any]) -> str:
    """Everything Slack would render of a message, as one string."""
    return json.dumps(
        {
            "text": message.get("text"),
            "blocks": message.get("blocks"),
            "attachments": message.get("attachments"),
        },
        ensure_ascii=False,
    )
