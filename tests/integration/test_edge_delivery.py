"""What the API accepts can be delivered: line breaks of every kind in a summary, figures in
stored alerts, and the magic-link form refusing what the audit trail could not store."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.devkit.mail_catcher import MailCatcher
from bot.devkit.slack_api import SlackApiDouble
from bot.platform.schemas import MAX_COUNT
from bot.slack.alert_blocks import alert_message
from tests.conftest import Service, approval_body
from tests.support import eventually

_BREAKS = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei\r\nj\tk\x7fl\x9bm"


async def test_a_summary_with_any_line_break_is_mailed_with_a_one_line_subject(
    mail_service: Service, catcher: MailCatcher
) -> None:
    status, task = await mail_service.request(
        "POST",
        "/api/v1/approvals",
        json=approval_body(summary=_BREAKS, approvers=[{"email": "dana@acme.test"}]),
    )
    assert status == 201 and task["summary"] == _BREAKS  # stored as sent
    [mail] = await eventually(lambda: catcher.to("dana@acme.test"), what="the request mail")
    subject = mail.message["Subject"]
    assert subject.endswith("a b c d e f g h i j k l m"), subject
    assert not set(subject) & set("\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e\r\n\x7f\x9b")


@pytest.mark.parametrize(
    ("rate", "cap"),
    [(int("9" * 400), 5), (10**5000, 5), (float("inf"), 5), ("fast", None), (1e300, 5)],
    ids=["400-digits", "5000-digits", "infinity", "text", "1e300"],
)
def test_stored_throughput_figures_never_stop_the_alert_rendering(rate: Any, cap: Any) -> None:
    """Rows written before the API bounded these figures still render."""
    alert = {
        "id": 7,
        "kind": "throughput",
        "state": "tripped",
        "workspace": "acme",
        "data": {"workflow": {"id": "wf", "name": "Loop"}, "rate": rate, "cap": cap},
    }
    text, blocks, _ = alert_message(alert, app_url="http://app.taskjuice.test")
    assert "tripped the throughput cap" in text and blocks


async def test_the_highest_accepted_rate_is_posted_to_slack(
    slack_service: Service, slack: SlackApiDouble
) -> None:
    status, _ = await slack_service.request(
        "PUT", "/api/v1/workspaces/acme", json={"slack_channel": "C0ALERTS1"}
    )
    assert status == 200
    event = {
        "workspace": "acme",
        "workflow": {"id": "wf", "name": "Loop"},
        "rate": MAX_COUNT,
        "cap": MAX_COUNT,
        "state": "tripped",
    }
    status, _ = await slack_service.request("POST", "/api/v1/events/throughput", json=event)
    assert status == 202
    [posted] = await eventually(lambda: slack.messages.get("C0ALERTS1"), what="the alert")
    assert "1e+12 runs/min against a cap of 1e+12" in json.dumps(posted)


async def _form(url: str) -> tuple[str, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        page = await response.text()
    nonce = re.search(r'name="nonce" value="([^"]+)"', page)
    assert nonce is not None
    return page, nonce.group(1)


@pytest.mark.parametrize(
    ("reason", "agent"),
    [
        ("nul \x00 inside", b"Mozilla/5.0"),
        ("fine", b"Mozilla/5.0 \x00"),
        ("fine", b"Mozilla/5.0 \xff\xfe"),
    ],
    ids=["nul-reason", "nul-agent", "non-utf8-agent"],
)
async def test_a_link_form_holding_unstorable_text_decides_nothing(
    mail_service: Service, catcher: MailCatcher, pool: asyncpg.Pool, reason: str, agent: bytes
) -> None:
    status, task = await mail_service.request(
        "POST", "/api/v1/approvals", json=approval_body(reversibility="safe")
    )
    assert status == 201
    [mail] = await eventually(lambda: catcher.to("dana@acme.test"), what="the request mail")
    found = re.search(r"(http://\S+/d/\S+)\?do=deny", mail.text())
    assert found is not None
    url = found.group(1)
    _, nonce = await _form(url)
    # The reason travels percent-encoded, byte for byte, as a browser would send it.
    raw = reason.encode("utf-8", "surrogatepass")
    encoded = "".join(f"%{b:02X}" for b in raw)
    body = f"nonce={nonce}&decision=deny&reason={encoded}"
    status = await _raw_post(url, body.encode(), agent)
    assert 400 <= status < 500, status
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0
    _, view = await mail_service.request("GET", f"/api/v1/approvals/{task['id']}")
    assert view["status"] == "pending"


async def _raw_post(url: str, body: bytes, agent: bytes) -> int:
    """POST with a User-Agent sent byte for byte (HTTP clients refuse to send such bytes)."""
    parts = aiohttp.client.URL(url)
    reader, writer = await asyncio.open_connection(parts.host, parts.port)
    writer.write(
        b"POST " + parts.raw_path.encode() + b" HTTP/1.1\r\n"
        b"Host: " + f"{parts.host}:{parts.port}".encode() + b"\r\n"
        b"User-Agent: " + agent + b"\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])
