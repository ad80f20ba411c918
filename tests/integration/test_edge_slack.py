"""Slack's door over real HTTP: whatever the signature headers hold, an unsigned request gets a
401 and one log line without its body; the Web API client is configured once."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlencode

import asyncpg
import pytest

from bot.devkit.slack_api import SlackApiDouble
from tests.conftest import Service, slack_settings, start_service
from tests.slack_support import TEAM, SlackUserAgent, sign
from tests.support import CallbackReceiver

_MARKER = "http://127.0.0.1:9/response-url-that-must-stay-private"


def _interaction() -> bytes:
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": "U0DANA001", "team_id": TEAM},
        "response_url": _MARKER,
        "actions": [{"action_id": "taskjuice_approve", "value": "x", "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def _headers(timestamp: str, signature: str) -> dict[str, str]:
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


_GOOD = sign(_interaction())["X-Slack-Signature"]


@pytest.mark.parametrize(
    "headers",
    [
        _headers("1" * 400, _GOOD),
        _headers("9" * 5000, _GOOD),
        _headers("²", _GOOD),
        _headers("١٧٠٠٠٠٠٠٠٠", _GOOD),  # Arabic-Indic digits: int() reads them
        _headers(str(int(time.time())), "v0=" + "é" * 64),
        _headers(str(int(time.time())), "v0=" + "0" * 64),
        _headers(str(int(time.time())), ""),
        _headers("", ""),
        _headers("-1", _GOOD),
        _headers(" 1700000000", _GOOD),
        {},
    ],
    ids=[
        "400-digit-ts",
        "5000-digit-ts",
        "superscript-ts",
        "arabic-ts",
        "non-ascii-signature",
        "wrong-signature",
        "no-signature",
        "empty",
        "negative-ts",
        "spaced-ts",
        "no-headers",
    ],
)
@pytest.mark.parametrize("body", [_interaction(), b"\xff\xfe", b"payload=%7B"])
async def test_unsigned_requests_get_401_whatever_their_headers(
    slack_service: Service,
    slack_user: SlackUserAgent,
    pool: asyncpg.Pool,
    headers: dict[str, str],
    body: bytes,
) -> None:
    status, _ = await slack_user.send(body, "application/x-www-form-urlencoded", headers=headers)
    assert status == 401
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0


async def test_a_signed_request_still_gets_through(
    slack_service: Service, slack_user: SlackUserAgent
) -> None:
    status, text = await slack_user.command("help", "U0DANA001")
    assert status == 200 and "taskjuice" in text.lower()


async def test_no_unverified_body_reaches_the_logs(
    slack_service: Service, slack_user: SlackUserAgent, caplog: pytest.LogCaptureFixture
) -> None:
    body = _interaction()
    stale = sign(body, timestamp=int(time.time()) - 600)  # a real payload after clock skew
    forged = sign(body, secret="not-the-signing-secret")
    with caplog.at_level(logging.DEBUG):
        for headers in (stale, forged, _headers("²", _GOOD)):
            status, _ = await slack_user.send(body, "application/x-www-form-urlencoded", headers)
            assert status == 401
        status, _ = await slack_user.send(
            b"\xff" + body, "application/x-www-form-urlencoded", stale
        )
        assert status == 401
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "response-url-that-must-stay-private" not in logged
    assert "response_url" not in logged, logged
    refusals = [r for r in caplog.records if getattr(r, "event", "") == "slack.unverified"]
    assert [r.__dict__["reason"] for r in refusals] == [
        "stale timestamp",
        "wrong signature",
        "malformed timestamp",
    ]


async def test_start_up_does_not_warn_that_a_token_is_configured_twice(
    database_url: str,
    receiver: CallbackReceiver,
    slack: SlackApiDouble,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As in production, where the token also sits in the process's environment.
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)
    with caplog.at_level(logging.WARNING):
        svc = await start_service(slack_settings(receiver, slack), database_url)
    try:
        agent = SlackUserAgent(svc.base_url)
        try:
            status, _ = await agent.command("help", "U0DANA001")
        finally:
            await agent.close()
        assert status == 200
    finally:
        await svc.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "token" in w and "unused" in w], warnings
