"""Driving the bot as Slack does: requests signed exactly as Slack signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.devkit.slack_api import SlackApiDouble

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


def sign(
    body: bytes, *, timestamp: int | None = None, secret: str = SIGNING_SECRET
) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    base = f"v0:{ts}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


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
        body = urlencode(
            {
                "token": "legacy",
                "team_id": TEAM,
                "team_domain": "acme",
                "channel_id": channel,
                "channel_name": "approvals",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/taskjuice",
                "text": text,
                "api_app_id": "A0TASKJ01",
                "response_url": "http://127.0.0.1:9/commands/1",
                "trigger_id": "13345224609.73.x",
            }
        ).encode()
        return await self.send(body, "application/x-www-form-urlencoded")

    async def event(self, event: dict[str, Any]) -> tuple[int, str]:
        body = json.dumps(
            {
                "token": "legacy",
                "team_id": TEAM,
                "api_app_id": "A0TASKJ01",
                "event": event,
                "type": "event_callback",
                "event_id": "Ev0001",
                "event_time": int(time.time()),
            }
        ).encode()
        return await self.send(body, "application/json")


def block_action(message: dict[str, Any], element: dict[str, Any], user: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0TASKJ01",
        "token": "legacy",
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": message["channel"],
            "is_ephemeral": False,
        },
        "trigger_id": "13345224609.73.trigger",
        "channel": {"id": message["channel"], "name": "directmessage"},
        "message": {"ts": message["ts"], "text": message["text"], "blocks": message["blocks"]},
        "response_url": "http://127.0.0.1:9/actions/1",
        "actions": [
            {
                "action_id": element["action_id"],
                "block_id": "b",
                "value": element.get("value", ""),
                "type": "button",
                "action_ts": str(time.time()),
            }
        ],
    }


def view_submission(view: dict[str, Any], user: str, reason: str | None) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0TASKJ01",
        "token": "legacy",
        "trigger_id": "13345224609.73.trigger2",
        "view": view
        | {
            "state": {
                "values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
            }
        },
    }


def button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    """The element of a message's actions block with `action_id`."""
    element: dict[str, Any] = next(
        e
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == action_id
    )
    return element


def buttons(message: dict[str, Any]) -> list[str]:
    return [
        e["action_id"]
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if "url" not in e
    ]


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
