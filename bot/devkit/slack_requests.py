"""Requests as Slack sends them to /slack/events: signed with slack-sdk's own signature code,
and the payloads of a button click, a modal submission, a slash command and an Events API
event. The dev console, the benchmark and the tests all drive the bot through this module;
the bot's own check of a signature is `handlers.slack.routes.refusal`.

Each request builder returns `(body, headers)`: the exact bytes to POST and the headers Slack
would send with them (content type, timestamp, signature).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

__all__ = ["SlackRequests", "button", "buttons", "sign"]

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def sign(body: bytes, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    """The timestamp and signature headers Slack sends with `body` (signed now by default)."""
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    try:
        signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    except UnicodeDecodeError:
        # Slack only sends UTF-8, and slack-sdk signs text only; a body that is not UTF-8
        # (a robustness check of the door) is signed over its raw bytes, as the bot checks.
        base = f"v0:{stamp}:".encode() + body
        signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    assert signature is not None
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}


def button(blocks_of: dict[str, Any], action_id: str, value: str | None = None) -> dict[str, Any]:
    """The button `action_id` (with `value`, when given) of a message's or view's blocks,
    attachments' blocks included."""
    blocks = list(blocks_of.get("blocks") or []) + [
        b for a in blocks_of.get("attachments") or [] for b in a.get("blocks") or []
    ]
    element: dict[str, Any] = next(
        e
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == action_id and (value is None or e.get("value") == value)
    )
    return element


def buttons(message: dict[str, Any]) -> list[str]:
    """The action ids of a message's buttons (link buttons left out)."""
    return [
        e["action_id"]
        for b in message.get("blocks") or []
        if b["type"] == "actions"
        for e in b["elements"]
        if "url" not in e
    ]


@dataclass(frozen=True)
class SlackRequests:
    """Slack's side of one workspace and app: builds payloads and signs requests."""

    signing_secret: str
    team_id: str = "T0TASKJ01"
    team_domain: str = "acme"
    app_id: str = "A0TASKJ01"
    token: str = "legacy"  # noqa: S105 (the deprecated verification token Slack still sends)

    def sign(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        return sign(body, self.signing_secret, timestamp=timestamp)

    def request(
        self, body: bytes, content_type: str, *, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        return body, {"Content-Type": content_type, **self.sign(body, timestamp=timestamp)}

    # -- interactivity ---------------------------------------------------------------------

    def actor(self, user: str, username: str | None = None) -> dict[str, Any]:
        return {"id": user, "username": username or user.lower(), "team_id": self.team_id}

    def block_actions_payload(
        self,
        *,
        user: str,
        action_id: str,
        value: str,
        message: dict[str, Any] | None = None,
        view_id: str | None = None,
        username: str | None = None,
        trigger_id: str = "13345224609.73.trigger",
        with_message: bool = True,
    ) -> dict[str, Any]:
        """A button click: in `message` (a dict with ts, channel, text and blocks, as the
        Slack double holds it), or in the view `view_id` (the App Home). Slack sends the
        clicked message along; `with_message=False` leaves it out (the benchmark's lean
        click)."""
        payload: dict[str, Any] = {
            "type": "block_actions",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": self.actor(user, username),
            "api_app_id": self.app_id,
            "token": self.token,
            "trigger_id": trigger_id,
            "response_url": "http://127.0.0.1:9/actions/1",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "type": "button",
                    "action_ts": str(time.time()),
                }
            ],
        }
        if message is None:
            payload["container"] = {"type": "view", "view_id": view_id or "V0HOME"}
            return payload
        payload["container"] = {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": message["channel"],
            "is_ephemeral": False,
        }
        payload["channel"] = {"id": message["channel"], "name": "directmessage"}
        if with_message:
            payload["message"] = {
                "ts": message["ts"],
                "text": message.get("text", ""),
                "blocks": message.get("blocks", []),
            }
        return payload

    def view_submission_payload(
        self,
        *,
        user: str,
        view: dict[str, Any],
        reason: str | None,
        username: str | None = None,
        trigger_id: str = "13345224609.73.trigger2",
    ) -> dict[str, Any]:
        """The deny modal submitted, with `reason` typed (None: left empty)."""
        state = {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}}
        return {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": self.actor(user, username),
            "api_app_id": self.app_id,
            "token": self.token,
            "trigger_id": trigger_id,
            "view": view | {"state": state},
        }

    def interaction(
        self, payload: dict[str, Any], *, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Any interactivity payload, form-encoded and signed."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.request(body, FORM, timestamp=timestamp)

    def block_actions(self, **fields: Any) -> tuple[bytes, dict[str, str]]:
        return self.interaction(self.block_actions_payload(**fields))

    def view_submission(self, **fields: Any) -> tuple[bytes, dict[str, str]]:
        return self.interaction(self.view_submission_payload(**fields))

    # -- commands and events ---------------------------------------------------------------

    def slash_command(
        self,
        *,
        user: str,
        channel: str,
        text: str,
        command: str = "/taskjuice",
        channel_name: str = "approvals",
        trigger_id: str = "13345224609.73.x",
    ) -> tuple[bytes, dict[str, str]]:
        body = urlencode(
            {
                "token": self.token,
                "team_id": self.team_id,
                "team_domain": self.team_domain,
                "channel_id": channel,
                "channel_name": channel_name,
                "user_id": user,
                "user_name": user.lower(),
                "command": command,
                "text": text,
                "api_app_id": self.app_id,
                "response_url": "http://127.0.0.1:9/commands/1",
                "trigger_id": trigger_id,
            }
        ).encode()
        return self.request(body, FORM)

    def event_callback(
        self, event: dict[str, Any], *, event_id: str = "Ev0001"
    ) -> tuple[bytes, dict[str, str]]:
        """An Events API delivery of `event`."""
        body = json.dumps(
            {
                "token": self.token,
                "team_id": self.team_id,
                "api_app_id": self.app_id,
                "event": event,
                "type": "event_callback",
                "event_id": event_id,
                "event_time": int(time.time()),
            }
        ).encode()
        return self.request(body, JSON)

    def app_home_opened(
        self, user: str, *, channel: str | None = None, event_id: str = "Ev0001"
    ) -> tuple[bytes, dict[str, str]]:
        event = {"type": "app_home_opened", "user": user, "tab": "home"}
        if channel is not None:
            event["channel"] = channel
        return self.event_callback(event, event_id=event_id)

    def app_uninstalled(self, *, event_id: str = "Ev0001") -> tuple[bytes, dict[str, str]]:
        return self.event_callback({"type": "app_uninstalled"}, event_id=event_id)

    def tokens_revoked(
        self,
        *,
        users: list[str] | None = None,
        bots: list[str] | None = None,
        event_id: str = "Ev0001",
    ) -> tuple[bytes, dict[str, str]]:
        tokens = {"oauth": users or [], "bot": bots or []}
        return self.event_callback({"type": "tokens_revoked", "tokens": tokens}, event_id=event_id)
